"""Synthetic frontal chest radiographs for the demo cohort and the phantom CXR model (numpy only).

`render_cxr(findings, rng)` draws a PA/AP view the way radiographs are displayed: the patient's right on the image
left, dense structures bright. Anatomy (lungs, mediastinum, heart, spine, ribs, clavicles, diaphragm, soft tissue,
vascular markings) varies with the generator; each finding changes the image where the condition shows:

- cardiomegaly: cardiac silhouette wider, cardiothoracic ratio (CTR) > 0.5 (normal 0.38-0.47);
- pleural_effusion: dependent opacity that blunts the costophrenic angle, meniscus rising laterally, either side;
- consolidation: patchy opacity in one lobe (upper, middle/lingula or lower), either side;
- pulmonary_edema: bilateral perihilar ("bat-wing") haze, indistinct vessels and Kerley B lines at the bases;
- pneumothorax: a lucent apical/lateral rim without lung markings, bounded by a thin visible pleural line.

The generator draws every random parameter in the same order whatever the findings, so one seed with and without
a finding gives images that differ only where the finding shows (the tests rely on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FINDINGS = ("cardiomegaly", "pleural_effusion", "consolidation", "pulmonary_edema", "pneumothorax")

# Intensities on a 0..1 scale before windowing (bright = dense, as displayed).
_AIR, _SOFT, _LUNG, _MEDIASTINUM, _HEART, _BONE, _ABDOMEN = 0.04, 0.50, 0.20, 0.74, 0.72, 0.86, 0.62


@dataclass(frozen=True)
class Layout:
    """Geometry of one rendered image in normalised coordinates (x, y in 0..1 of the image side)."""

    midline: float
    thorax_half_width: float  # inner rib margin, from the midline
    apex_y: float
    base_y: tuple[float, float]  # costophrenic angle height, (image left lung, image right lung)
    heart_right: float  # extent of the cardiac silhouette to the image left of the midline (patient's right)
    heart_left: float  # extent to the image right (patient's left, the apex)
    heart_center_y: float

    @property
    def cardiothoracic_ratio(self) -> float:
        return (self.heart_right + self.heart_left) / (2 * self.thorax_half_width)


def _blur(img: np.ndarray, sigma_px: float) -> np.ndarray:
    """Separable Gaussian blur with edge padding, by summing shifted slices (numpy only, O(pixels * taps))."""
    r = max(1, int(np.ceil(2.5 * sigma_px)))
    taps = np.exp(-0.5 * (np.arange(-r, r + 1) / max(sigma_px, 1e-3)) ** 2).astype(np.float32)
    taps /= taps.sum()
    n0, n1 = img.shape
    p = np.pad(img, ((r, r), (0, 0)), mode="edge")
    out = sum(w * p[i:i + n0] for i, w in enumerate(taps))
    p = np.pad(out, ((0, 0), (r, r)), mode="edge")
    return sum(w * p[:, i:i + n1] for i, w in enumerate(taps)).astype(np.float32)


def _upsample(low: np.ndarray, n: int) -> np.ndarray:
    """Bilinear upsampling of a small square array to n x n, as two small matrix products."""
    k = low.shape[0]
    pos = (np.arange(n, dtype=np.float32) + 0.5) / n * k - 0.5
    i0 = np.clip(np.floor(pos).astype(int), 0, k - 1)
    i1 = np.clip(i0 + 1, 0, k - 1)
    w = np.clip(pos - np.floor(pos), 0, 1).astype(np.float32)
    up = np.zeros((n, k), np.float32)
    up[np.arange(n), i0] += 1 - w
    up[np.arange(n), i1] += w
    return up @ low.astype(np.float32) @ up.T


def _smooth_noise(low: np.ndarray, n: int) -> np.ndarray:
    """Unit-variance smooth random field from low-resolution white noise."""
    f = _upsample(low, n)
    return (f - f.mean()) / (f.std() + 1e-6)


def _smoothstep(d: np.ndarray, width: float) -> np.ndarray:
    """0 outside (d < 0) to 1 inside (d > width), smooth in between: soft edges instead of aliased ones."""
    t = np.clip(d / width, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _segment_distance(x, y, x0, y0, x1, y1):
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((x - x0) * dx + (y - y0) * dy) / (dx * dx + dy * dy + 1e-12), 0.0, 1.0)
    return np.hypot(x - (x0 + t * dx), y - (y0 + t * dy))


def render_cxr(findings: frozenset[str], rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Render one synthetic frontal chest radiograph.

    Args:
        findings: a subset of FINDINGS present in this image.
        rng: the random generator; same state, same image.
        size: the image side in pixels (square).

    Returns:
        uint8 array (size, size), grayscale, patient's right on the image left.
    """
    image, _ = render_cxr_with_layout(findings, rng, size)
    return image


def render_cxr_with_layout(findings: frozenset[str], rng: np.random.Generator,
                           size: int = 256) -> tuple[np.ndarray, Layout]:
    """Like render_cxr, and also return the drawn geometry (for tests and label sanity checks)."""
    unknown = set(findings) - set(FINDINGS)
    if unknown:
        raise ValueError(f"unknown finding(s) {sorted(unknown)}; known: {', '.join(FINDINGS)}")
    f = frozenset(findings)
    # Anatomy is drawn at half resolution for sizes >= 160 and upsampled (4x fewer pixels to draw; the acquisition
    # blur hides the difference); noise is added at full resolution.
    n_out = size
    n = size // 2 if size >= 160 else size
    px = 1.0 / n  # one drawing pixel: thin lines stay at least this wide so they do not alias away
    c = (np.arange(n, dtype=np.float32) + 0.5) / n
    x, y = np.meshgrid(c, c)  # x: column (image left -> right), y: row (top -> bottom)

    # ---- every random draw, in a fixed order --------------------------------------------------------------
    u = rng.uniform
    m = 0.5 + u(-0.02, 0.02)
    W = u(0.34, 0.39)
    apex = u(0.12, 0.17)
    base_r = u(0.72, 0.77)  # patient's right (image left) hemidiaphragm is higher
    base_l = base_r + u(0.01, 0.04)
    dome = u(0.05, 0.09)
    mediast = u(0.045, 0.06)
    heart_cy = u(0.60, 0.64)
    heart_hh = u(0.13, 0.16)
    normal_ctr = u(0.39, 0.47)
    big_ctr = u(0.55, 0.66)
    right_share = u(0.30, 0.38)  # share of the cardiac width right of the midline
    soft_w = u(0.05, 0.09)
    rib_phase = u(-0.015, 0.015)
    rib_curve = u(0.55, 0.8)
    clav_y = u(0.11, 0.15)
    n_vessels = 9
    vessels = rng.uniform(size=(2, n_vessels, 4))  # (side, vessel, [angle, length, width, brightness])
    eff_side = int(rng.integers(2))
    eff_height = u(0.05, 0.18)
    eff_meniscus = u(0.05, 0.10)
    eff_density = u(0.75, 1.0)
    cons_side = int(rng.integers(2))
    cons_lobe = int(rng.integers(3))
    cons_blobs = rng.uniform(size=(6, 4))
    cons_density = u(0.32, 0.50)
    edema_amp = u(0.16, 0.28)
    edema_spread = u(0.09, 0.13)
    kerley = rng.uniform(size=(2, 5, 2))
    ptx_side = int(rng.integers(2))
    ptx_gap = u(0.03, 0.075)
    contrast = u(0.85, 1.15)
    brightness = u(-0.05, 0.05)
    gamma = u(0.85, 1.15)
    noise_sigma = u(0.012, 0.03)
    noise = rng.standard_normal((n_out, n_out), dtype=np.float32)
    texture = rng.standard_normal((24, 24)).astype(np.float32)  # low resolution: upsampled into smooth fields
    patchy = rng.standard_normal((40, 40)).astype(np.float32)

    ctr = big_ctr if "cardiomegaly" in f else normal_ctr
    heart_w = ctr * 2 * W
    heart_r, heart_l = heart_w * right_share, heart_w * (1 - right_share)
    layout = Layout(m, W, apex, (base_r, base_l), heart_r, heart_l, heart_cy)

    # ---- body and soft tissue ------------------------------------------------------------------------------
    body_half = W + soft_w + 0.04 * (y - 0.5)
    body = _smoothstep(body_half - np.abs(x - m), 0.02) * _smoothstep(y - 0.02, 0.05)
    img = _AIR + (_SOFT - _AIR) * body
    img = img - 0.05 * body * np.clip((np.abs(x - m) - W) / (soft_w + 1e-3), 0, 1)  # soft tissue thins laterally

    # ---- lungs ---------------------------------------------------------------------------------------------
    lungs = np.zeros((n, n), np.float32)
    side_masks = []
    lat_dist = []  # distance inside from the lateral/apical pleura, per side
    for side, base in ((-1, base_r), (1, base_l)):
        s = side * (x - m)  # distance from the midline towards this lung's side
        grow = np.sqrt(np.clip((y - apex) / 0.30, 0.0, 1.0))
        lateral = mediast + (W - mediast) * grow
        t = np.clip((lateral - s) / (lateral - mediast + 1e-3), 0.0, 1.0)  # 0 at the lateral wall, 1 medially
        diaphragm = base - dome * (1 - (1 - t) ** 2)
        inside = np.minimum.reduce([lateral - s, s - mediast, diaphragm - y, (y - apex) * 0.8])
        mask = _smoothstep(inside, 0.012)
        side_masks.append(mask)
        lat_dist.append(np.minimum(lateral - s, (y - apex) * 0.9))
        lungs = np.maximum(lungs, mask)
    # Lung fields are dark; the abdomen under the diaphragm stays bright soft tissue.
    below = np.zeros((n, n), np.float32)
    for side, base in ((-1, base_r), (1, base_l)):
        below = np.maximum(below, _smoothstep(y - base + dome * 0.5, 0.04) * (side * (x - m) > 0))
    img = img + (_ABDOMEN - _SOFT) * below * body
    img = img * (1 - lungs) + _LUNG * lungs
    # Gastric bubble under the patient's left hemidiaphragm (image right).
    bubble = np.exp(-(((x - (m + 0.17)) / 0.05) ** 2 + ((y - (base_l + 0.05)) / 0.025) ** 2))
    img = img - 0.25 * bubble * below

    # ---- vascular markings: branches from the hila, fading to the periphery -------------------------------
    markings = np.zeros((n, n), np.float32)
    for si, side in enumerate((-1, 1)):
        hx, hy = m + side * (mediast + 0.05), 0.46
        for angle01, length01, width01, bright01 in vessels[si].tolist():
            ang = np.pi * (-0.45 + 0.95 * angle01)  # fan from up-lateral to down-lateral
            L = 0.12 + 0.16 * length01
            x1, y1 = hx + side * L * np.cos(ang), hy + L * np.sin(ang)
            w = max(0.003 + 0.004 * width01, 0.6 * px)
            # Only the vessel's bounding box: a full-image pass per vessel would dominate the render time.
            r0, r1 = (max(0, int((min(hy, y1) - 0.02) * n)), min(n, int((max(hy, y1) + 0.02) * n) + 1))
            c0, c1 = (max(0, int((min(hx, x1) - 0.02) * n)), min(n, int((max(hx, x1) + 0.02) * n) + 1))
            if r0 >= r1 or c0 >= c1:
                continue
            xb, yb = x[r0:r1, c0:c1], y[r0:r1, c0:c1]
            d = _segment_distance(xb, yb, hx, hy, x1, y1)
            fade = np.clip(1 - np.hypot(xb - hx, yb - hy) / (L + 0.02), 0, 1)
            box = markings[r0:r1, c0:c1]
            np.maximum(box, (0.07 + 0.07 * bright01) * np.exp(-(d / w) ** 2) * fade, out=box)
    markings = markings + 0.025 * _smooth_noise(texture, n)
    marking_mask = lungs.copy()

    # ---- pneumothorax: a lucent rim with no markings and a thin pleural line --------------------------------
    if "pneumothorax" in f:
        mask, d = side_masks[ptx_side], lat_dist[ptx_side]
        gap = ptx_gap * (1 + 0.6 * np.clip((0.45 - y) / 0.3, 0, 1))  # wider at the apex
        rim = mask * (d < gap)
        marking_mask = marking_mask * (1 - rim)
        img = img - 0.09 * rim
        line = mask * np.exp(-(((d - gap) / max(0.005, 0.8 * px)) ** 2)) * (y < (base_r + base_l) / 2 - 0.08)
        img = img + 0.28 * line
    img = img + markings * marking_mask

    # ---- mediastinum, heart, spine -------------------------------------------------------------------------
    top = _smoothstep(y - 0.04, 0.03)
    widen = mediast + 0.02 + 0.03 * np.clip((y - 0.3) / 0.2, 0, 1)
    med = _smoothstep(widen - np.abs(x - m), 0.01) * top * _smoothstep(heart_cy - y + 0.05, 0.03)
    # Aortic knob: a bulge on the patient's left (image right) of the upper mediastinum.
    knob = _smoothstep(1 - (((x - (m + mediast + 0.02)) / 0.03) ** 2 + ((y - 0.34) / 0.035) ** 2), 0.3)
    img = np.maximum(img, _MEDIASTINUM * np.maximum(med, knob))
    hw = np.where(x < m, np.float32(heart_r), np.float32(heart_l))
    heart_e = ((x - m) / hw) ** 2 + ((y - heart_cy) / heart_hh) ** 2
    heart = _smoothstep(1 - heart_e, 0.12) * (y > heart_cy - heart_hh)
    img = img * (1 - heart) + _HEART * heart
    lungs_seen = lungs * (1 - heart)  # the lung fields not hidden behind the heart
    trachea = _smoothstep(0.013 - np.abs(x - m), 0.005) * _smoothstep(0.40 - y, 0.03) * top
    img = img - 0.22 * trachea
    spine = _smoothstep(0.032 - np.abs(x - m), 0.008) * top
    vertebrae = 0.5 + 0.5 * np.cos(2 * np.pi * (y - rib_phase) / 0.055)
    img = img + (0.03 + 0.04 * vertebrae) * spine

    # ---- ribs and clavicles --------------------------------------------------------------------------------
    ax = np.abs(x - m)
    # Ten posterior ribs in one pass: z counts rib spacings along a curve that rises from the spine, then falls
    # laterally; each spacing holds one bone band.
    spacing = 0.058
    z = (y - (apex + 0.03 + rib_phase) + 0.05 * ax - rib_curve * ax ** 2) / spacing
    frac = z - np.floor(z) - 0.5
    q = np.square(frac * (spacing / 0.011))
    # np.square twice: a float power of a negative base is ~100x slower than a multiply
    bones = 0.10 * np.exp(-np.square(q)) * ((z > -0.5) & (z < 9.5) & (ax > 0.04) & (ax < W + 0.02))
    bones = bones * (1 - 0.6 * heart) * (1 - 0.7 * below)  # ribs barely show through the heart and abdomen
    clav = clav_y - 0.12 * (ax - 0.05) + 0.25 * (ax - 0.05) ** 2
    bones = np.maximum(bones, 0.18 * np.exp(-(((y - clav) / 0.014) ** 2)) * (ax > 0.05) * (ax < 0.30))
    img = img + bones * body

    # ---- findings that add density -------------------------------------------------------------------------
    if "pleural_effusion" in f:
        side = (-1, 1)[eff_side]
        base = (base_r, base_l)[eff_side]
        s = side * (x - m)
        t_lat = np.clip((W - s) / (W - mediast), 0, 1)  # 0 at the lateral wall
        level = base - eff_height - eff_meniscus * (1 - t_lat) ** 2  # meniscus climbs the lateral wall
        # Fluid fills the dependent lung field, so the hemidiaphragm's edge disappears into it (silhouette sign).
        fluid = _smoothstep(y - level, 0.02) * side_masks[eff_side] * (s > mediast)
        fluid = fluid * (1 - heart)
        img = img + (_SOFT + 0.08 - _LUNG) * eff_density * fluid  # densities add up along the beam
    if "consolidation" in f:
        side = (-1, 1)[cons_side]
        lobe_y = ((0.20, 0.38), (0.42, 0.55), (0.56, 0.70))[cons_lobe]
        opacity = np.zeros((n, n), np.float32)
        for bx, by, br, bw in cons_blobs.tolist():
            cx = m + side * (mediast + 0.06 + (W - mediast - 0.12) * bx)
            cy = lobe_y[0] + (lobe_y[1] - lobe_y[0]) * by
            r = 0.025 + 0.035 * br
            opacity = np.maximum(opacity, (0.6 + 0.4 * bw) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / r ** 2))
        patchy = 0.7 + 0.3 * np.tanh(_smooth_noise(patchy, n))  # patchy, not uniform
        img = img + cons_density * opacity * patchy * side_masks[cons_side] * (1 - heart)
    if "pulmonary_edema" in f:
        haze = np.zeros((n, n), np.float32)
        for side in (-1, 1):
            hx = m + side * (mediast + 0.06)
            haze = haze + np.exp(-(((x - hx) / (edema_spread * 1.1)) ** 2 + ((y - 0.47) / (edema_spread * 1.4)) ** 2))
        img = img + edema_amp * np.clip(haze, 0, 1) * lungs_seen
        kl = np.zeros((n, n), np.float32)
        for si, side in enumerate((-1, 1)):
            base = (base_r, base_l)[si]
            for ky, kx in kerley[si].tolist():  # short horizontal lines reaching the lateral pleura at the bases
                yy = base - 0.03 - 0.09 * ky
                xl = m + side * (W - 0.005 - 0.01 * kx)
                line = np.exp(-((y - yy) / max(0.0025, 0.7 * px)) ** 2)
                kl = np.maximum(kl, line * (np.abs(x - (xl - side * 0.02)) < 0.02))
        img = img + 0.12 * kl * lungs_seen

    # ---- acquisition: blur, exposure, noise ----------------------------------------------------------------
    img = img.astype(np.float32)
    if "pulmonary_edema" in f:  # vessels lose their edges in edema: blur the lungs a little more
        img = img * (1 - 0.6 * lungs_seen) + _blur(img, n / 150) * 0.6 * lungs_seen
    if n != n_out:
        img = _upsample(img, n_out)
    img = _blur(img, max(0.6, n_out / 300))
    img = np.clip((img - 0.5) * contrast + 0.5 + brightness, 0, 1) ** gamma
    img = img + noise_sigma * noise
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), layout
