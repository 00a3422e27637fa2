"""`clinseek data train-phantom`: a small CNN trained on the demo cohort's synthetic radiographs.

The images come from clinseek_demo.cxr_images.render_cxr (the generator the demo cohort uses), rendered at the
cohort's size (256) and passed through the same preprocessing as at inference (the card's), so the committed
ONNX artifact sees in training exactly what the toolset feeds it. Every random choice is seeded and torch runs
deterministic on one thread, so the same seed reproduces the same weights and the same .onnx bytes.
Needs the `train` extra (torch, onnx); imports happen inside the functions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clinseek_demo.cxr_images import FINDINGS, render_cxr

from clinseek_cxr.card import CARD_SCHEMA, ModelCard, sha256_file
from clinseek_cxr.export import export_onnx

PHANTOM_NAME = "phantom_cxr"
RENDER_SIZE = 256  # the demo cohort's image size
INPUT_SIZE = 128


@dataclass
class PhantomPlan:
    seed: int = 0
    n_train: int = 2000
    n_val: int = 400
    n_test: int = 600
    epochs: int = 10
    batch: int = 32
    lr: float = 2e-3
    prevalence: float = 0.3


def phantom_card_template() -> dict:
    """The card's fixed part; provenance and evaluation are filled in after training."""
    return {
        "schema": CARD_SCHEMA,
        "name": PHANTOM_NAME,
        "version": "1",
        "description": "Small CNN for the five findings of clinseek's synthetic demo radiographs. A phantom: it has "
                       "never seen a real chest X-ray.",
        "weights": f"{PHANTOM_NAME}.onnx",
        "labels": list(FINDINGS),
        "input": {"size": INPUT_SIZE, "channels": 1, "name": "image"},
        "preprocess": {"resize": INPUT_SIZE, "crop": "center", "scaling": "mean_std", "mean": [0.5],
                       "std": [0.25]},
        "output": {"activation": "sigmoid", "name": "logits"},
        "intended_use": "Demonstrations and tests of clinseek's cxr toolset on the synthetic demo cohort.",
        "limitations": [
            "Trained only on synthetic images drawn by clinseek_demo.cxr_images; its outputs on real "
            "radiographs carry no clinical meaning.",
            "Frontal (PA/AP) views only.",
            "Not a medical device; never use for patient care.",
        ],
    }


def build_net():
    import torch
    from torch import nn

    class PhantomNet(nn.Module):
        """Four strided conv + batch-norm blocks; the head sees a 2x2 average pool (where: left/right,
        upper/lower) and a global max pool (small local findings such as a pleural line). About 50k parameters."""

        def __init__(self, n_labels: int = len(FINDINGS)):
            super().__init__()
            layers, c_in = [], 1
            for c_out, k in ((16, 5), (32, 3), (48, 3), (64, 3)):
                layers += [nn.Conv2d(c_in, c_out, k, stride=2, padding=k // 2), nn.BatchNorm2d(c_out), nn.ReLU()]
                c_in = c_out
            self.features = nn.Sequential(*layers)
            self.avg = nn.AvgPool2d(INPUT_SIZE // 32)  # 8x8 -> 2x2
            self.max = nn.MaxPool2d(INPUT_SIZE // 16)  # 8x8 -> 1x1
            self.head = nn.Linear(64 * 5, n_labels)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            f = self.features(x)
            return self.head(torch.cat([torch.flatten(self.avg(f), 1), torch.flatten(self.max(f), 1)], 1))

    return PhantomNet()


def make_dataset(n: int, seed: int, stream: int, card: ModelCard, prevalence: float = 0.3):
    """n images and their label matrix. Image i of a stream draws from its own generator (seed, stream, i)."""
    from clinseek_cxr.images import preprocess

    x = np.empty((n, 1, INPUT_SIZE, INPUT_SIZE), np.float32)
    y = np.zeros((n, len(FINDINGS)), np.float32)
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])
        present = rng.uniform(size=len(FINDINGS)) < prevalence
        y[i] = present
        img = render_cxr(frozenset(f for f, p in zip(FINDINGS, present) if p), rng, size=RENDER_SIZE)
        x[i] = preprocess(img.astype(np.float32) / 255.0, card)
    return x, y


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The demo's one AUROC (stats.auroc, ties counted half); None when one class is absent, as cards expect."""
    from clinseek_demo.stats import auroc as rank_auroc

    value = rank_auroc(scores, labels)
    return None if value != value else value   # nan -> None


def youden_threshold(probs: np.ndarray, labels: np.ndarray) -> float:
    """The operating threshold maximising sensitivity + specificity - 1 on a validation set."""
    labels = labels.astype(bool)
    best, best_t = -1.0, 0.5
    for t in np.unique(np.round(probs, 3)):
        pred = probs >= t
        sens = (pred & labels).sum() / max(labels.sum(), 1)
        spec = (~pred & ~labels).sum() / max((~labels).sum(), 1)
        if sens + spec - 1 > best:
            best, best_t = sens + spec - 1, float(t)
    return round(best_t, 3)


def save_state(net, path: Path) -> None:
    """A torch state_dict as .npz, byte-reproducible (fixed zip timestamps) and loadable without pickle."""
    import io
    import zipfile

    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, tensor in net.state_dict().items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, tensor.detach().cpu().numpy(), allow_pickle=False)
            zf.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)), buf.getvalue(),
                        compress_type=zipfile.ZIP_DEFLATED)


def load_state(net, path: Path):
    """Load save_state's file into `net` (strict: every key must match)."""
    import torch

    with np.load(path, allow_pickle=False) as data:
        state = {k: torch.from_numpy(data[k].copy()) for k in data.files}
    net.load_state_dict(state)
    return net


def train_phantom(out_dir: Path, plan: PhantomPlan = PhantomPlan(), log=print) -> Path:
    """Train, export and write the card; return the card's path."""
    import torch

    torch.manual_seed(plan.seed)
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions in one fixed order: same seed, same bytes
    try:
        return _train(Path(out_dir), plan, log)
    finally:
        torch.set_num_threads(threads)


def _train(out_dir: Path, plan: PhantomPlan, log) -> Path:
    import torch
    from torch import nn

    t0 = time.perf_counter()
    tmpl = phantom_card_template()
    dummy_sha = "0" * 64
    card = ModelCard.model_validate({**tmpl, "provenance": {"training_data": "-", "weights_sha256": dummy_sha}})
    xtr, ytr = make_dataset(plan.n_train, plan.seed, 0, card, plan.prevalence)
    xva, yva = make_dataset(plan.n_val, plan.seed, 1, card, plan.prevalence)
    xte, yte = make_dataset(plan.n_test, plan.seed, 2, card, plan.prevalence)
    log(f"rendered {plan.n_train}+{plan.n_val}+{plan.n_test} images in {time.perf_counter() - t0:.1f}s")

    net = build_net()
    opt = torch.optim.Adam(net.parameters(), lr=plan.lr)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(plan.seed)
    xt, yt = torch.from_numpy(xtr), torch.from_numpy(ytr)
    for epoch in range(plan.epochs):
        net.train()
        perm = torch.randperm(len(xt), generator=gen)
        total = 0.0
        for i in range(0, len(perm), plan.batch):
            idx = perm[i:i + plan.batch]
            opt.zero_grad()
            loss = loss_fn(net(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        for g in opt.param_groups:  # halve the rate for the last 40% of the epochs
            g["lr"] = plan.lr * (0.5 if epoch >= plan.epochs * 0.6 else 1.0)
        log(f"epoch {epoch + 1}/{plan.epochs}: loss {total / len(perm):.4f}")

    net.eval()
    with torch.no_grad():
        pva = torch.sigmoid(net(torch.from_numpy(xva))).numpy()
        pte = torch.sigmoid(net(torch.from_numpy(xte))).numpy()
    thresholds = {f: youden_threshold(pva[:, j], yva[:, j]) for j, f in enumerate(FINDINGS)}
    aucs = {f: (None if (a := auroc(pte[:, j], yte[:, j])) is None else round(a, 4))
            for j, f in enumerate(FINDINGS)}

    onnx_path = out_dir / f"{PHANTOM_NAME}.onnx"
    export_onnx(net, onnx_path, INPUT_SIZE)
    from clinseek_cxr.export import AGREEMENT_TOL, torch_ort_max_diff

    diff = torch_ort_max_diff(net, onnx_path, INPUT_SIZE, inputs=xte[:16])
    if diff > AGREEMENT_TOL:
        raise RuntimeError(f"ONNX Runtime differs from torch by {diff:.2e} on held-out images")
    # The torch weights too (batch norm is folded into the convolutions in the ONNX graph), so a test can rebuild
    # the torch model and check the committed ONNX file against it.
    save_state(net, out_dir / f"{PHANTOM_NAME}.torch.npz")
    digest = sha256_file(onnx_path)
    card_data = {
        **tmpl,
        "thresholds": thresholds,
        "provenance": {
            "training_data": f"{plan.n_train} synthetic radiographs from clinseek_demo.cxr_images.render_cxr "
                             f"({RENDER_SIZE}px, each finding present with probability {plan.prevalence}, "
                             f"seed {plan.seed}); thresholds by Youden's J on {plan.n_val} more",
            "weights_sha256": digest,
            "source": "clinseek",
            "license": "Apache-2.0",
            "command": f"clinseek data train-phantom --out {out_dir.name or '.'} --seed {plan.seed}",
        },
        "evaluation": {"dataset": f"{plan.n_test} held-out synthetic radiographs (seed {plan.seed}, stream 2)",
                       "n": plan.n_test, "auroc": aucs},
    }
    card = ModelCard.model_validate(card_data)
    card_path = out_dir / f"{PHANTOM_NAME}.yaml"
    card_path.write_text(card.to_yaml(), encoding="utf-8")
    log(f"held-out AUROC: {', '.join(f'{k} {v}' for k, v in aucs.items())}")
    log(f"wrote {onnx_path} ({onnx_path.stat().st_size / 1024:.0f} KiB, sha256 {digest[:12]}...; torch and ONNX "
        f"Runtime agree within {diff:.1e}) and {card_path} in {time.perf_counter() - t0:.0f}s")
    return card_path
