"""Latency of the kb toolset in local Qdrant mode: search p50/p95 at 20k and 100k chunks, build time per 10k.

Chunks are real ICD-10-CM chunks (the full code set, ~98k, topped up to the size with the ccsr and reference
built-ins repeated under new ids). Dense vectors for the latency runs are random unit vectors: search cost does
not depend on their content, and embedding 100k chunks on a laptop CPU would dominate the run; embedding
throughput is measured separately on a sample. Ratios are measured in the same run:
  - bulk build (sqlite fsync off while loading, what `kb build` does) vs qdrant-client's default per-point commit;
  - search at 100k vs 20k; dense and hybrid vs sparse;
  - kb's local sparse index (numpy, same scores) vs qdrant-client local mode's own sparse scoring.

    .venv/bin/python bench/bench_kb_latency.py [--sizes 20000,100000] [--queries 40]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

QUERIES = ["septic shock lactate", "pneumonia unspecified organism", "acute kidney failure", "atrial fibrillation",
           "type 2 diabetes with hyperglycemia", "pulmonary embolism", "heart failure", "urinary tract infection",
           "chronic obstructive pulmonary disease exacerbation", "hypertension", "J18.9", "A41.9",
           "gastrointestinal hemorrhage", "cerebral infarction", "hyponatremia", "alcohol withdrawal delirium",
           "cellulitis of lower limb", "anemia in chronic kidney disease", "respiratory failure with hypoxia",
           "fracture of femur"]


def corpus(n: int):
    from clinseek_kb.builtin_sources import ccsr_chunks, icd10cm_chunks, reference_chunks

    base = icd10cm_chunks() + ccsr_chunks() + reference_chunks()
    out = []
    copy = 0
    while len(out) < n:
        for c in base:
            if len(out) >= n:
                break
            out.append(replace(c, source=f"{c.source}#{copy}") if copy else c)
        copy += 1
    return out


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def build(path: Path, chunks, *, dense_dim: int | None, bulk: bool = True) -> float:
    from clinseek_kb.store import Store, avgdl_of

    class RandomEmbedder:
        identity = {"model": "random", "weights": "-", "dim": dense_dim, "pooling": "mean", "normalize": True}

        def embed(self, texts):
            v = np.random.default_rng(len(texts)).standard_normal((len(texts), dense_dim)).astype(np.float32)
            return v / np.linalg.norm(v, axis=1, keepdims=True)

    emb = RandomEmbedder() if dense_dim else None
    store = Store(path=path)
    try:
        avgdl = avgdl_of(chunks)
        store.create("bench", embedder=emb.identity if emb else None, avgdl=avgdl, chunk_chars=1200)
        t = time.perf_counter()
        if bulk:
            store.upsert("bench", chunks, avgdl=avgdl, embedder=emb)
        else:  # qdrant-client default: every point committed (and fsynced) on its own
            bulk_cm = store.bulk
            store.bulk = lambda name: __import__("contextlib").nullcontext()  # type: ignore[method-assign]
            try:
                store.upsert("bench", chunks, avgdl=avgdl, embedder=emb)
            finally:
                store.bulk = bulk_cm  # type: ignore[method-assign]
        return time.perf_counter() - t
    finally:
        store.close()


def search_times(path: Path, n_queries: int, modes, dim: int | None, fast_local: bool = True):
    from clinseek_kb.store import Store

    t = time.perf_counter()
    store = Store(path=path)
    open_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    out = {}
    try:
        for mode in modes:
            times = []
            for i in range(n_queries):
                q = QUERIES[i % len(QUERIES)]
                dense = None
                if mode != "sparse":
                    v = rng.standard_normal(dim).astype(np.float32)
                    dense = (v / np.linalg.norm(v)).tolist()
                if i == 0 and fast_local and mode == "sparse":  # the index is built on first use: time it
                    t = time.perf_counter()
                    store.local_sparse("bench")
                    out["index_build_s"] = time.perf_counter() - t
                t = time.perf_counter()
                store.search("bench", q, limit=5, mode=mode, query_dense=dense, fast_local=fast_local)
                times.append(time.perf_counter() - t)
            out[mode] = (statistics.median(times) * 1000, pct(times, 95) * 1000)
    finally:
        store.close()
    return open_s, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="20000,100000")
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--dim", type=int, default=384)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench_kb_lat_"))
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        all_chunks = corpus(max(sizes))

        ten = all_chunks[:10_000]
        bulk_s = build(root / "b1", ten, dense_dim=None, bulk=True)
        plain_s = build(root / "b2", ten, dense_dim=None, bulk=False)
        print(f"build 10k chunks, sparse only: {bulk_s:.1f}s bulk vs {plain_s:.1f}s per-point commit "
              f"({plain_s / bulk_s:.2f}x faster)")

        from clinseek_kb import library
        from clinseek_kb.config import KbConfig
        from types import SimpleNamespace

        ctx = SimpleNamespace(recipe_dir=root, cache_dir=root / "cache", warn=print)
        emb = library.load_embedder(KbConfig(embedder="all-MiniLM-L6-v2"), ctx)
        sample = [f"{c.section}\n{c.text}" for c in all_chunks[:500]]
        t = time.perf_counter()
        emb.embed(sample)
        rate = len(sample) / (time.perf_counter() - t)
        print(f"embedding (all-MiniLM-L6-v2, onnxruntime CPU): {rate:.0f} chunks/s -> "
              f"{10_000 / rate:.0f}s per 10k chunks on top of the build")

        results = {}
        for n in sizes:
            chunks = all_chunks[:n]
            path = root / f"s{n}"
            secs = build(path, chunks, dense_dim=args.dim)
            open_s, times = search_times(path, args.queries, ("sparse", "dense", "hybrid"), args.dim)
            _, qtimes = search_times(path, args.queries, ("sparse", "hybrid"), args.dim, fast_local=False)
            index_s = times.pop("index_build_s")
            results[n] = times
            print(f"\n{n} chunks: build (sparse + {args.dim}-d dense, vectors given) {secs:.1f}s = "
                  f"{secs / n * 10_000:.1f}s per 10k; open {open_s:.1f}s; local sparse index {index_s:.1f}s")
            for mode, (p50, p95) in times.items():
                line = f"  {mode:7} search p50 {p50:7.1f} ms  p95 {p95:7.1f} ms"
                if mode in qtimes:
                    q50, q95 = qtimes[mode]
                    line += (f"  | qdrant-local scoring p50 {q50:7.1f} ms p95 {q95:7.1f} ms "
                             f"({q50 / p50:.0f}x slower)")
                print(line)
            shutil.rmtree(path, ignore_errors=True)
        if len(sizes) == 2:
            a, b = sizes
            for mode in ("sparse", "dense", "hybrid"):
                print(f"{mode}: p50 at {b} / p50 at {a} = {results[b][mode][0] / results[a][mode][0]:.2f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
