"""Benchmark the cxr inference path: ONNX Runtime vs torch eager, and micro-batching under concurrent episodes.

    python bench/bench_cxr.py                       # CPU: phantom + DenseNet-121-sized model, batch 1 and 16
    python bench/bench_cxr.py --device cuda         # the same on a GPU (onnxruntime-gpu + torch with CUDA)
    python bench/bench_cxr.py --skip-densenet --episodes 16

Everything compared is measured in the same run, on the same model weights and the same inputs; the ratios are
what to read. Needs torch (the train extra) for the torch side and to build the DenseNet-121-sized model.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins"))


def densenet121(n_labels: int = 18, in_channels: int = 1):
    """DenseNet-121 (growth 32, blocks 6-12-24-16), the architecture of torchxrayvision's densenet121-res224-all,
    built here so the benchmark needs neither torchvision nor downloaded weights (random weights, same cost)."""
    import torch
    from torch import nn

    class Layer(nn.Module):
        def __init__(self, c, growth=32, bn=4):
            super().__init__()
            self.body = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, bn * growth, 1, bias=False),
                                      nn.BatchNorm2d(bn * growth), nn.ReLU(),
                                      nn.Conv2d(bn * growth, growth, 3, padding=1, bias=False))

        def forward(self, x):
            return torch.cat([x, self.body(x)], 1)

    layers: list = [nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                    nn.MaxPool2d(3, 2, 1)]
    c = 64
    for i, n in enumerate((6, 12, 24, 16)):
        for _ in range(n):
            layers.append(Layer(c))
            c += 32
        if i < 3:
            layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
            c //= 2
    layers += [nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, n_labels)]
    torch.manual_seed(0)
    net = nn.Sequential(*layers).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics, as in a trained model
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def phantom_torch():
    """The committed phantom in torch, from its committed torch weights (the ONNX file folds batch norm)."""
    from clinseek_cxr.card import load_card, models_dir
    from clinseek_demo.phantom import build_net, load_state

    card = load_card(models_dir() / "phantom_cxr.yaml")
    return load_state(build_net(), models_dir() / "phantom_cxr.torch.npz").eval(), card


def timed(fn, seconds: float, min_iters: int = 3) -> float:
    """Median seconds per call over repeated calls (after one warm-up), for at least `seconds` in all."""
    fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def ort_vs_torch(name, net, onnx_path, size, device, batches, seconds, threads):
    import onnxruntime as ort
    import torch

    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
    in_use = sess.get_providers()[0]
    tnet = net.to(device)
    rows = []
    for b in batches:
        x = np.random.default_rng(b).standard_normal((b, 1, size, size)).astype(np.float32)
        xt = torch.from_numpy(x).to(device)
        iname = sess.get_inputs()[0].name

        def run_torch():
            with torch.inference_mode():
                tnet(xt)
            if device == "cuda":
                torch.cuda.synchronize()

        def run_ort():
            sess.run(None, {iname: x})

        with torch.inference_mode():
            ref = tnet(xt).float().cpu().numpy()
        diff = float(np.abs(ref - sess.run(None, {iname: x})[0]).max())
        t_torch = timed(run_torch, seconds)
        t_ort = timed(run_ort, seconds)
        rows.append((name, device, in_use.replace("ExecutionProvider", ""), b, b / t_torch, b / t_ort,
                     t_torch / t_ort, diff))
    return rows


def make_bench_db(episodes: int, rounds: int, tmp: Path) -> Path:
    """One study per (episode, round), each a distinct synthetic PNG, in a DuckDB cxr_metadata table."""
    import duckdb
    from PIL import Image

    from clinseek_demo.cxr_images import render_cxr

    root = tmp / "bench"
    (root / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for e in range(episodes):
        for r in range(rounds):
            sid = 100000 + e * 1000 + r
            rel = f"img/{sid}.png"
            Image.fromarray(render_cxr(frozenset(), np.random.default_rng(sid))).save(root / rel)
            rows.append((f"d{sid}", e, sid, "PA", datetime(2150, 1, 1, 0, r), rel))
    db = root / "bench.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE cxr_metadata (dicom_id VARCHAR, subject_id INTEGER, study_id INTEGER, "
                "ViewPosition VARCHAR, study_datetime TIMESTAMP, path VARCHAR)")
    con.executemany("INSERT INTO cxr_metadata VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.close()
    return db


def micro_batching(db: Path, model: str, episodes: int, rounds: int, configs, threads):
    """Wall time for `episodes` concurrent episodes (threads, as the engine runs sync tools) each classifying
    `rounds` distinct studies through the real toolset, for each (max_batch, batch_wait_ms) in `configs`."""
    from clinseek.toolsets import Binding, Episode
    from clinseek_cxr.toolset import CxrConfig, CxrToolset

    def run(batch: int, wait: float) -> tuple[float, list[int]]:
        ts = CxrToolset(CxrConfig(database=str(db), model=model, providers="cpu", max_batch=batch,
                                  batch_wait_ms=wait, disk_cache=False, threads=threads or None), None)
        ts.open()
        eps = [Episode(Binding(f"q{e}", e, None, datetime(2150, 2, 1)), None) for e in range(episodes)]
        for ep in eps:
            ts.bind(ep)
        barrier = threading.Barrier(episodes)

        def episode(e):
            barrier.wait()
            for r in range(rounds):
                ts.cxr_classify(eps[e], study_id=100000 + e * 1000 + r)

        workers = [threading.Thread(target=episode, args=(e,)) for e in range(episodes)]
        t0 = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        dt = time.perf_counter() - t0
        sizes = list(ts.batcher.batches)
        ts.close()
        return dt, sizes

    run(1, 0)  # warm-up: file cache, session creation
    return [(batch, wait, *run(batch, wait)) for batch, wait in configs]


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads for both engines (0: defaults)")
    ap.add_argument("--skip-densenet", action="store_true")
    ap.add_argument("--episodes", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--skip-batching", action="store_true")
    ap.add_argument("--skip-compare", action="store_true", help="only the micro-batching part")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    from clinseek_cxr.export import export_onnx

    if args.threads:
        torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    print(f"torch {torch.__version__} (threads {torch.get_num_threads()}), onnxruntime {ort.__version__} "
          f"(available: {', '.join(ort.get_available_providers())}), device {args.device}")
    rows = []
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        net, card = phantom_torch()
        dn = None if args.skip_densenet else densenet121()
        if not args.skip_compare:
            rows += ort_vs_torch("phantom 128px", net, card.weights_path, 128, args.device, batches, args.seconds,
                                 args.threads)
            if dn is not None:
                export_onnx(dn, tmp / "densenet121.onnx", 224)
                rows += ort_vs_torch("densenet121 224px", dn, tmp / "densenet121.onnx", 224, args.device, batches,
                                     args.seconds, args.threads)
            print("\nmodel               device  ORT provider  batch  torch img/s  ORT img/s  ORT/torch  max|diff|")
            for name, dev, prov, b, tt, to, ratio, diff in rows:
                print(f"{name:<19} {dev:<7} {prov:<13} {b:>5}  {tt:>11.1f}  {to:>9.1f}  {ratio:>8.2f}x  {diff:.1e}")
        if not args.skip_batching and args.device == "cpu":
            db = make_bench_db(args.episodes, args.rounds, tmp)
            targets = [("phantom", "phantom")]
            if dn is not None:
                from clinseek_cxr.export import export_model

                card = export_model(dn, tmp / "dn", name="densenet121", labels=[f"l{i}" for i in range(18)],
                                    input_size=224, training_data="random weights (benchmark)")
                targets.append(("densenet121", str(card)))
            configs = [(1, 0.0), (16, 0.0), (16, 5.0)]
            n = args.episodes * args.rounds
            print(f"\nmicro-batching: {args.episodes} concurrent episodes x {args.rounds} studies = {n} images, CPU, "
                  f"through the toolset (image loading included)")
            print("model        max_batch  wait_ms  wall s   img/s  inference calls  gain vs max_batch 1")
            for label, model in targets:
                res = micro_batching(db, model, args.episodes, args.rounds, configs, args.threads)
                base = res[0][2]
                for batch, wait, dt, sizes in res:
                    print(f"{label:<12} {batch:>9}  {wait:>7.0f}  {dt:>6.2f}  {n / dt:>6.1f}  {len(sizes):>15}  "
                          f"{base / dt:>6.2f}x")


if __name__ == "__main__":
    main()
