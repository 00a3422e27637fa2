"""Retrieval quality of the kb toolset: sparse vs dense vs hybrid, side by side, on ICD-10-CM.

Index: the ICD-10-CM categories and subcategories of chapters 1, 4, 9, 10, 14, 18 (infectious, endocrine,
circulatory, respiratory, genitourinary, symptoms: 6,842 chunks, built exactly as the `icd10cm` built-in is; the
chapters are a flag, the default keeps dense embedding affordable on a shared 2-core CPU). Queries, for codes sampled with a fixed seed:
  - inclusion: one of the code's inclusion terms (what a clinician might write), target = that code;
  - paraphrase: the code's title rewritten by rules (synonyms, word order, dropped qualifiers), target = that code.
A hit counts when the target code's chunk is in the top 5; MRR is over the top 10.

    .venv/bin/python bench/bench_kb_retrieval.py [--codes 400] [--chapters 1,2,...] [--out DIR]
"""
from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

SYNONYMS = [
    (r"\bunspecified\b", ""), (r"\bdisease\b", "disorder"), (r"\bkidney\b", "renal"), (r"\bheart\b", "cardiac"),
    (r"\blung\b", "pulmonary"), (r"\bacute\b", "sudden"), (r"\bchronic\b", "long-standing"),
    (r"\binfection\b", "infectious process"), (r"\bneoplasm\b", "tumour"), (r"\bmalignant\b", "cancerous"),
    (r"\bbenign\b", "non-cancerous"), (r"\bhemorrhage\b", "bleeding"), (r"\bfracture\b", "broken bone"),
    (r"\bwithout\b", "with no"), (r"\bdue to\b", "caused by"), (r"\bother\b", "another"), (r"\bleft\b", "left-sided"),
    (r"\bright\b", "right-sided"), (r"\binflammation\b", "swelling"), (r"\bpain\b", "ache"),
    (r"\bdisorders?\b", "condition"), (r"\bsyndrome\b", "condition"), (r"\bhypertension\b", "high blood pressure"),
    (r"\bdiabetes mellitus\b", "diabetes"), (r"\bpneumonia\b", "lung infection"), (r"\bstomach\b", "gastric"),
    (r"\bliver\b", "hepatic"), (r"\bblood\b", "haematological"), (r"\bskin\b", "cutaneous"),
    (r"\bbrain\b", "cerebral"), (r"\bcongenital\b", "inborn"), (r"\bpoisoning\b", "toxic effect"),
]
DEFAULT_CHAPTERS = "1,4,9,10,14,18"


def paraphrase(title: str, rng: random.Random) -> str:
    text = title.lower().replace(",", " ")
    for pattern, repl in SYNONYMS:
        text = re.sub(pattern, repl, text)
    words = [w for w in text.split() if w not in ("of", "the", "and", "in", "nos")]
    if len(words) > 3:  # move the head noun phrase: "pneumonia organism" -> "organism pneumonia"
        cut = rng.randrange(1, len(words))
        words = words[cut:] + words[:cut]
    return " ".join(words)


def queries(chunks, n: int, seed: int):
    rng = random.Random(seed)
    with_terms = [c for c in chunks if c.extra.get("inclusion_terms")]
    inclusion = [(rng.choice(c.extra["inclusion_terms"]), c.extra["code"])
                 for c in rng.sample(with_terms, min(n, len(with_terms)))]
    billable = [c for c in chunks if c.extra.get("billable")]
    para = [(paraphrase(c.section, rng), c.extra["code"]) for c in rng.sample(billable, min(n, len(billable)))]
    return {"inclusion": inclusion, "paraphrase": para}


def evaluate(search, qs):
    hits5, rr = 0, 0.0
    for q, code in qs:
        got = [h.payload.get("code") for h in search(q)]
        if code in got[:5]:
            hits5 += 1
        if code in got:
            rr += 1.0 / (got.index(code) + 1)
    return hits5 / len(qs), rr / len(qs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--codes", type=int, default=400)
    ap.add_argument("--chapters", default=DEFAULT_CHAPTERS)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--max-length", type=int, default=128, help="embedder max tokens per chunk")
    ap.add_argument("--out", default=None, help="keep the built index here (default: a temp dir)")
    args = ap.parse_args()

    from clinseek_kb import library
    from clinseek_kb.builtin_sources import icd10cm_chunks
    from clinseek_kb.config import KbConfig
    from clinseek_kb.store import Store

    root = Path(args.out or tempfile.mkdtemp(prefix="bench_kb_"))
    ctx = SimpleNamespace(recipe_dir=root, cache_dir=root / "cache", warn=print)
    chapters = args.chapters.split(",")
    cfg = KbConfig(path=str(root / "kb"), collections=["icd10cm"], icd10cm_chapters=chapters,
                   embedder={"model": "all-MiniLM-L6-v2", "max_length": args.max_length})
    embedder = library.load_embedder(cfg, ctx)
    chunks = icd10cm_chunks(chapters)
    qs = queries(chunks, args.codes, args.seed)
    store = Store.from_config(cfg, ctx)
    try:
        if not library.builtin_is_current(store, cfg, "icd10cm", embedder):
            t = time.perf_counter()
            report = library.build_builtin(store, cfg, "icd10cm", embedder)
            print(f"built {report['chunks']} chunks (sparse + dense) in {time.perf_counter() - t:.0f}s")
        print(f"index: ICD-10-CM chapters {args.chapters}: {store.count('icd10cm')} chunks; "
              f"{len(qs['inclusion'])} inclusion-term queries, {len(qs['paraphrase'])} paraphrase queries "
              f"(seed {args.seed})\n")
        rows = {}
        for mode in ("sparse", "dense", "hybrid"):
            def search(q, mode=mode):
                return library.search(cfg, q, ctx, limit=10, mode=mode, store=store, embedder=embedder)

            rows[mode] = {name: evaluate(search, q) for name, q in qs.items()}
        print(f"{'mode':8} {'inclusion R@5':>14} {'MRR':>6} {'paraphrase R@5':>15} {'MRR':>6}")
        for mode, r in rows.items():
            print(f"{mode:8} {r['inclusion'][0]:14.3f} {r['inclusion'][1]:6.3f} {r['paraphrase'][0]:15.3f} "
                  f"{r['paraphrase'][1]:6.3f}")
        for name in ("inclusion", "paraphrase"):
            s, d, h = (rows[m][name][0] for m in ("sparse", "dense", "hybrid"))
            print(f"{name}: recall@5 hybrid/sparse = {h / max(s, 1e-9):.2f}x, hybrid/dense = {h / max(d, 1e-9):.2f}x")
        print("\nexamples:", *(f"  {k}: {v[0][0]!r} -> {v[0][1]}" for k, v in qs.items()), sep="\n")
    finally:
        store.close()


if __name__ == "__main__":
    main()
