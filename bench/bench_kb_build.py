"""Build time of the built-in collections: the demo subset on first and later open, and the full ICD-10-CM.

    .venv/bin/python -W ignore bench/bench_kb_build.py
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

DEMO_CHAPTERS = [1, 2, 4, 9, 10, 11, 14, 18]


def main() -> None:
    from clinseek_kb import library
    from clinseek_kb.config import KbConfig
    from clinseek_kb.toolset import KbToolset

    root = Path(tempfile.mkdtemp(prefix="bench_kb_build_"))
    try:
        ctx = SimpleNamespace(recipe_dir=root, cache_dir=root / "cache", warn=lambda _: None)
        cfg = KbConfig(icd10cm_chapters=DEMO_CHAPTERS)
        t = time.perf_counter()
        ts = KbToolset(cfg, ctx)
        ts.open()
        first = time.perf_counter() - t
        chunks = sum(b["chunks"] for b in ts.built)
        ts.close()
        t = time.perf_counter()
        ts = KbToolset(cfg, ctx)
        ts.open()
        ts.kb_search(None, "sepsis")
        again = time.perf_counter() - t
        ts.close()
        print(f"demo subset (icd10cm chapters {DEMO_CHAPTERS} + ccsr + reference, {chunks} chunks): first open "
              f"{first:.1f}s, later open + first search {again:.2f}s ({first / again:.0f}x)")
        full = KbConfig(path=str(root / "full"), collections=["icd10cm"])
        t = time.perf_counter()
        report = library.build_collections(full)
        secs = time.perf_counter() - t
        n = report[0]["chunks"]
        print(f"full ICD-10-CM, sparse only: {n} chunks in {secs:.1f}s = {secs / n * 10_000:.1f}s per 10k "
              f"(chunk generation included)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
