"""The synthetic radiograph renderer: shape, determinism, and each finding changing the image where it should."""
import numpy as np
import pytest

from clinseek_demo.cxr_images import FINDINGS, render_cxr, render_cxr_with_layout


def _pair(finding, seed, size=256):
    """Same seed with and without one finding (the renderer draws all parameters in a fixed order)."""
    base, layout = render_cxr_with_layout(frozenset(), np.random.default_rng(seed), size)
    with_f, layout_f = render_cxr_with_layout(frozenset({finding}), np.random.default_rng(seed), size)
    return base.astype(float), with_f.astype(float), layout, layout_f


def test_findings_tuple_is_the_contract():
    assert FINDINGS == ("cardiomegaly", "pleural_effusion", "consolidation", "pulmonary_edema", "pneumothorax")


@pytest.mark.parametrize("size", [128, 256])
def test_shape_dtype_and_range(size):
    img = render_cxr(frozenset(FINDINGS), np.random.default_rng(1), size=size)
    assert img.shape == (size, size) and img.dtype == np.uint8
    assert img.min() < 40 and img.max() > 200  # air outside the body and bone both present


def test_deterministic_by_seed_and_varies_across_seeds():
    a = render_cxr(frozenset({"consolidation"}), np.random.default_rng(42))
    b = render_cxr(frozenset({"consolidation"}), np.random.default_rng(42))
    c = render_cxr(frozenset({"consolidation"}), np.random.default_rng(43))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_finding_is_refused():
    with pytest.raises(ValueError, match="unknown finding"):
        render_cxr(frozenset({"fracture"}), np.random.default_rng(0))


def test_lungs_dark_mediastinum_bright_and_patient_right_on_image_left():
    img, lay = render_cxr_with_layout(frozenset(), np.random.default_rng(3))
    n = img.shape[0]
    row = int(0.42 * n)
    lung_l = img[row, int((lay.midline - lay.thorax_half_width * 0.6) * n)]
    lung_r = img[row, int((lay.midline + lay.thorax_half_width * 0.6) * n)]
    spine = img[row, int(lay.midline * n)]
    assert spine > lung_l + 60 and spine > lung_r + 60
    # The cardiac apex points to the patient's left, which is the image right.
    assert lay.heart_left > lay.heart_right


def _cardiac_width(img, lay):
    """Bright run through the heart's widest row, in pixels."""
    n = img.shape[0]
    row = img[int(lay.heart_center_y * n)].astype(float)
    lo, hi = int((lay.midline - lay.thorax_half_width) * n), int((lay.midline + lay.thorax_half_width) * n)
    seg = row[lo:hi]
    threshold = (np.percentile(seg, 10) + np.percentile(seg, 95)) / 2
    return int((seg > threshold).sum())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cardiomegaly_widens_the_cardiac_silhouette(seed):
    base, big, lay, lay_big = _pair("cardiomegaly", seed)
    assert lay.cardiothoracic_ratio < 0.5 < lay_big.cardiothoracic_ratio
    n = base.shape[0]
    w0, w1 = _cardiac_width(base, lay), _cardiac_width(big, lay_big)
    assert w1 > w0 + 0.06 * n
    # Measured from the pixels, the ratio crosses 0.5 as well.
    thorax_px = 2 * lay.thorax_half_width * n
    assert w0 / thorax_px < 0.5 < w1 / thorax_px


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_effusion_is_a_dependent_opacity_on_one_side(seed):
    base, eff, lay, _ = _pair("pleural_effusion", seed)
    n = base.shape[0]
    diff = eff - base
    assert diff.min() > -20  # adds density, removes none
    changed = diff > 25
    rows, cols = np.nonzero(changed)
    assert rows.size > 40
    assert rows.mean() / n > 0.55  # at the lung base
    side = np.sign(cols / n - lay.midline)
    assert abs(side.mean()) > 0.95  # one side only
    # Meniscus: the opacity climbs higher at the lateral wall than medially.
    lateral = np.abs(cols / n - lay.midline) > lay.thorax_half_width * 0.75
    medial = np.abs(cols / n - lay.midline) < lay.thorax_half_width * 0.55
    if lateral.any() and medial.any():
        assert rows[lateral].min() < rows[medial].min()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_consolidation_adds_patchy_opacity_in_one_lung(seed):
    base, con, lay, _ = _pair("consolidation", seed)
    n = base.shape[0]
    diff = con - base
    rows, cols = np.nonzero(diff > 20)
    assert rows.size > 30
    assert abs(np.sign(cols / n - lay.midline).mean()) > 0.95
    assert np.std(diff[diff > 20]) > 0.1 * np.mean(diff[diff > 20])  # patchy, not a flat fill


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_edema_is_bilateral_and_perihilar(seed):
    base, ede, lay, _ = _pair("pulmonary_edema", seed)
    n = base.shape[0]
    diff = ede - base
    y0, y1 = int(0.35 * n), int(0.60 * n)

    def band(lo, hi):
        return diff[y0:y1, int((lay.midline + lo) * n):int((lay.midline + hi) * n)].mean()

    W = lay.thorax_half_width
    left_hilum, right_hilum = band(-0.5 * W, -0.2 * W), band(0.2 * W, 0.5 * W)
    assert left_hilum > 8 and right_hilum > 8
    periphery = band(-W, -0.85 * W)
    assert left_hilum > periphery  # densest near the hila


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pneumothorax_rim_is_lucent_without_markings_and_has_a_pleural_line(seed):
    base, ptx, lay, _ = _pair("pneumothorax", seed)
    n = base.shape[0]
    diff = ptx - base
    dark_r, dark_c = np.nonzero(diff < -10)
    bright_r, bright_c = np.nonzero(diff > 20)
    assert dark_r.size > 50 and bright_r.size > 10
    side = np.sign(dark_c / n - lay.midline)
    assert abs(side.mean()) > 0.95
    # The rim hugs the lateral chest wall; the pleural line lies medial to it on the same side.
    assert np.median(np.abs(dark_c / n - lay.midline)) > 0.6 * lay.thorax_half_width
    assert np.sign(bright_c / n - lay.midline).mean() * side.mean() > 0.9
    # The rim is lucent: darker than the lung just medial to the pleural line on the same rows.
    rim = diff < -10
    rim_rows = np.unique(dark_r)
    inner = np.zeros_like(rim)
    for r in rim_rows:
        cols = dark_c[dark_r == r]
        edge = cols.min() if side.mean() > 0 else cols.max()
        lo, hi = (edge - 12, edge - 4) if side.mean() > 0 else (edge + 4, edge + 12)
        inner[r, max(lo, 0):max(hi, 0)] = True
    assert ptx[rim].mean() < ptx[inner & ~rim].mean() - 5
