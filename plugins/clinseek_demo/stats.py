"""How hard is the benchmark? Prevalence per task and what simple pre-cutoff evidence reaches, versus chance.

`python -m clinseek_demo.stats [--patients N] [--seed S]` builds (or reuses) the demo cohort, enumerates every
eligible task row at natural prevalence, and scores simple baselines that only read rows visible at each row's
prediction time (labs by storetime, vitals by charttime, orders by starttime, reports by storetime):

- risk tasks: AUROC of an early-warning score (abnormal last lactate, creatinine, WBC, platelets, heart rate,
  systolic pressure, respiratory rate, SpO2; age >= 75; for readmission also admissions in the prior year);
- diagnosis_ccsr: set-F1 of rules mapping visible orders and lab values to categories;
- lab_orders_24h: set-F1 of "the groups drawn in the 24 hours before the cutoff";
- CXR tasks: AUROC / set-F1 / accuracy of "what the most recent earlier report of the patient said".

Chance is the AUROC of a coin (0.5), the set-F1 of a random candidate subset of the average label size, and the
majority-class accuracy. The numbers are written into docs/data.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from clinseek_demo import benchmark, catalog


def auroc(score, label) -> float:
    """Rank-based AUROC (ties count half); nan when only one class is present."""
    s, y = np.asarray(score, dtype=float), np.asarray(label, dtype=bool)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = pd.Series(s).rank(method="average").to_numpy()
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def set_f1(pred, label) -> float:
    """The set F1 `clinseek score` uses (clinseek.scoring.set_prf): baselines and runs are on one scale."""
    from clinseek.scoring import set_prf

    return set_prf(pred, label)[2]


def all_rows(db: Path, seed: int) -> list[dict]:
    t = benchmark.load(db)
    rows = []
    for task in benchmark.ALL_TASKS:
        if task in benchmark.RISK_TASKS:
            rows += benchmark.risk_rows(t, task, seed)
        elif task in benchmark.DECISION_TASKS:
            rows += benchmark.decision_rows(t, task, seed)
        else:
            rows += benchmark.multimodal_rows(t, task, seed, None)
    return rows


def _evidence(con, rows: list[dict]) -> pd.DataFrame:
    """Last visible values per task row (qid), read with the same time rules an agent's tools apply."""
    q = pd.DataFrame({"qid": [r["qid"] for r in rows], "subject_id": [r["subject_id"] for r in rows],
                      "hadm_id": [r["hadm_id"] for r in rows],
                      "cutoff": pd.to_datetime([r["prediction_time"] for r in rows])})
    con.register("q", q)
    lab = {k: catalog.lab_items()[k]["itemid"] for k in ("lactate", "creatinine", "wbc", "platelets", "ntprobnp",
                                                         "hemoglobin")}
    lab_sql = ", ".join(f"arg_max(l.valuenum, l.charttime) FILTER (WHERE l.itemid = {i}) AS {k}"
                        for k, i in lab.items())
    labs = con.execute(f"""SELECT q.qid, {lab_sql} FROM q JOIN labevents l
        ON l.hadm_id = q.hadm_id AND l.storetime <= q.cutoff GROUP BY q.qid""").df()
    ch = {k: catalog.chart_items()[k]["itemid"] for k in ("heart_rate", "sbp_noninvasive", "resp_rate", "spo2")}
    chart_sql = ", ".join(f"arg_max(c.valuenum, c.charttime) FILTER (WHERE c.itemid = {i}) AS icu_{k}"
                          for k, i in ch.items())
    chart = con.execute(f"""SELECT q.qid, {chart_sql} FROM q JOIN chartevents c
        ON c.hadm_id = q.hadm_id AND c.charttime <= q.cutoff GROUP BY q.qid""").df()
    ed = con.execute("""SELECT q.qid, arg_max(v.heartrate, v.charttime) AS ed_hr, arg_max(v.sbp, v.charttime) AS ed_sbp,
            arg_max(v.resprate, v.charttime) AS ed_rr, arg_max(v.o2sat, v.charttime) AS ed_spo2
        FROM q JOIN edstays e ON e.hadm_id = q.hadm_id JOIN vitalsign v ON v.stay_id = e.stay_id
        AND v.charttime <= q.cutoff GROUP BY q.qid""").df()
    demo = con.execute("""SELECT q.qid, p.anchor_age + (year(q.cutoff) - p.anchor_year) AS age,
            (SELECT count(*) FROM admissions a2 WHERE a2.subject_id = q.subject_id AND a2.dischtime <= q.cutoff
               AND a2.admittime > q.cutoff - INTERVAL 365 DAY AND a2.hadm_id <> q.hadm_id) AS prior_adm
        FROM q JOIN patients p USING (subject_id)""").df()
    meds = con.execute("""SELECT q.qid, list(DISTINCT r.drug) AS drugs FROM q JOIN prescriptions r
        ON r.hadm_id = q.hadm_id AND r.starttime <= q.cutoff GROUP BY q.qid""").df()
    con.unregister("q")
    out = q[["qid"]]
    for df in (labs, chart, ed, demo, meds):
        out = out.merge(df, on="qid", how="left")
    # ICU charting wins over the ED's when both exist (it is more recent)
    for k, e in (("heart_rate", "ed_hr"), ("sbp_noninvasive", "ed_sbp"), ("resp_rate", "ed_rr"), ("spo2", "ed_spo2")):
        out[k] = out[f"icu_{k}"].fillna(out[e])
    return out.set_index("qid")


def warning_score(e: pd.DataFrame) -> pd.Series:
    gt = lambda col, x: (e[col] > x).astype(int)  # noqa: E731
    lt = lambda col, x: (e[col] < x).astype(int)  # noqa: E731
    return (gt("lactate", 2) + gt("lactate", 4) + gt("creatinine", 1.5) + gt("wbc", 12) + lt("wbc", 4)
            + lt("platelets", 150) + gt("heart_rate", 100) + lt("sbp_noninvasive", 100) + gt("resp_rate", 22)
            + lt("spo2", 92) + gt("age", 75))


def _ccsr_rule(e: pd.Series) -> list[str]:
    drugs = set(e["drugs"]) if isinstance(e["drugs"], (list, np.ndarray)) else set()
    rules = [("INF002", e["lactate"] > 2 and bool(drugs & {"Vancomycin", "Piperacillin-Tazobactam"})),
             ("RSP002", bool(drugs & {"CefTRIAXone", "Azithromycin"})),
             ("CIR019", e["ntprobnp"] > 1000 or "Furosemide" in drugs),
             ("GEN002", e["creatinine"] > 1.5),
             ("RSP008", bool(drugs & {"PredniSONE", "Ipratropium-Albuterol Neb", "Tiotropium Bromide"})),
             ("DIG021", "Pantoprazole" in drugs or e["hemoglobin"] < 9),
             ("CIR007", "Amlodipine" in drugs), ("END002", "Insulin" in drugs), ("CIR017", "Apixaban" in drugs)]
    return [f"{code} {catalog.CCSR_NAMES[code]}" for code, hit in rules if hit]


def compute(db: Path, seed: int = 7) -> dict:
    import duckdb

    rows = all_rows(db, seed)
    con = duckdb.connect(str(db), read_only=True)
    try:
        ev = _evidence(con, rows)
        prior_labs = _prior_lab_groups(con, rows)
        prior_reports = _prior_reports(con, rows)
    finally:
        con.close()
    rng = np.random.default_rng(seed)
    out = {}
    for task in benchmark.ALL_TASKS:
        rs = [r for r in rows if r["task"] == task]
        res = {"family": benchmark.TASK_TYPE[task], "rows": len(rs)}
        if task in benchmark.RISK_TASKS or task == "cxr_finding_presence":
            y = np.array([r["label"] == ["yes"] for r in rs])
            res["prevalence"] = float(y.mean()) if len(y) else float("nan")
            if task == "cxr_finding_presence":
                score = [_mentions(prior_reports.get(r["qid"]), r["question"]) for r in rs]
                res["baseline"] = "earlier report of the patient mentions the finding"
            else:
                s = warning_score(ev.loc[[r["qid"] for r in rs]])
                if task == "readmission_30d":
                    s = s + ev.loc[[r["qid"] for r in rs], "prior_adm"].fillna(0)
                score = s.to_numpy()
                res["baseline"] = "early-warning score" + (" + prior admissions" if task == "readmission_30d" else "")
            res["auroc"] = auroc(score, y)
            res["chance"] = 0.5
        else:
            labels = [r["label"] for r in rs]
            res["mean_label_size"] = float(np.mean([len(x) for x in labels])) if labels else float("nan")
            if task == "diagnosis_ccsr":
                preds = [_ccsr_rule(ev.loc[r["qid"]]) for r in rs]
                res["baseline"] = "rules on visible orders and labs"
            elif task == "lab_orders_24h":
                preds = [prior_labs.get(r["qid"], []) for r in rs]
                res["baseline"] = "repeat the groups drawn in the previous 24 h"
            elif task == "cxr_findings":
                preds = [_report_findings(prior_reports.get(r["qid"])) for r in rs]
                res["baseline"] = "findings of the patient's most recent earlier report"
            else:  # cxr_change
                preds = [["persistent"] for _ in rs]
                res["baseline"] = "always 'persistent'"
            res["set_f1"] = float(np.mean([set_f1(p, g) for p, g in zip(preds, labels)])) if rs else float("nan")
            chance = []
            for r in rs:
                k = max(1, round(res["mean_label_size"]))
                pick = rng.choice(len(r["candidates"]), min(k, len(r["candidates"])), replace=False)
                chance.append(set_f1([r["candidates"][i] for i in pick], r["label"]))
            res["chance"] = float(np.mean(chance)) if chance else float("nan")
            if task == "cxr_change":
                counts = pd.Series([x[0] for x in labels]).value_counts(normalize=True)
                res["label_shares"] = {k: round(float(v), 3) for k, v in counts.items()}
        out[task] = res
    return out


def _prior_lab_groups(con, rows) -> dict[str, list[str]]:
    group_of = {catalog.lab_items()[k]["itemid"]: g for g, s in catalog.LAB_GROUPS.items() for k in s["items"]}
    rs = [r for r in rows if r["task"] == "lab_orders_24h"]
    if not rs:
        return {}
    q = pd.DataFrame({"qid": [r["qid"] for r in rs], "hadm_id": [r["hadm_id"] for r in rs],
                      "cutoff": pd.to_datetime([r["prediction_time"] for r in rs])})
    con.register("q", q)
    df = con.execute("""SELECT q.qid, list(DISTINCT l.itemid) AS items FROM q JOIN labevents l
        ON l.hadm_id = q.hadm_id AND l.charttime <= q.cutoff AND l.charttime > q.cutoff - INTERVAL 24 HOUR
        GROUP BY q.qid""").df()
    con.unregister("q")
    return {r.qid: sorted({group_of[i] for i in r.items if i in group_of}) for r in df.itertuples()}


def _prior_reports(con, rows) -> dict[str, str]:
    rs = [r for r in rows if r["task"].startswith("cxr_")]
    if not rs:
        return {}
    q = pd.DataFrame({"qid": [r["qid"] for r in rs], "subject_id": [r["subject_id"] for r in rs],
                      "cutoff": pd.to_datetime([r["prediction_time"] for r in rs])})
    con.register("q", q)
    df = con.execute("""SELECT q.qid, arg_max(r.text, r.storetime) AS text FROM q JOIN radiology r
        ON r.subject_id = q.subject_id AND r.storetime <= q.cutoff GROUP BY q.qid""").df()
    con.unregister("q")
    return dict(zip(df["qid"], df["text"]))


KEYWORDS = {"cardiomegaly": "enlarged", "pleural effusion": "pleural effusion.", "consolidation": "consolidation",
            "pulmonary edema": "pulmonary edema", "pneumothorax": "pneumothorax with"}


def _impression(text: str | None) -> str:
    return (text or "").split("IMPRESSION:")[-1].lower() if text else ""


def _mentions(text: str | None, question: str) -> float:
    imp = _impression(text)
    for name in KEYWORDS:
        if f"show {name}?" in question:
            key = {"cardiomegaly": "cardiomegaly", "pleural effusion": "pleural effusion",
                   "consolidation": "consolidation", "pulmonary edema": "pulmonary edema",
                   "pneumothorax": "pneumothorax"}[name]
            return float(key in imp)
    return 0.0


def _report_findings(text: str | None) -> list[str]:
    imp = _impression(text)
    found = [n for n in benchmark.FINDING_NAME.values() if n in imp]
    return found or [benchmark.NO_FINDING]


def to_markdown(stats: dict, patients: int, seed: int) -> str:
    lines = [f"Demo build: {patients} patients, seed {seed}; every eligible row at natural prevalence "
             f"(`python -m clinseek_demo.stats --patients {patients} --seed {seed}`).", "",
             "| task | family | rows | prevalence / mean labels | simple baseline | baseline | chance |",
             "|---|---|---|---|---|---|---|"]
    for task, r in stats.items():
        if "auroc" in r:
            lines.append(f"| {task} | {r['family']} | {r['rows']} | {r['prevalence']:.1%} | {r['baseline']} | "
                         f"AUROC {r['auroc']:.3f} | AUROC 0.5 |")
        else:
            extra = f" ({', '.join(f'{k} {v:.0%}' for k, v in r['label_shares'].items())})" \
                if "label_shares" in r else ""
            lines.append(f"| {task} | {r['family']} | {r['rows']} | {r['mean_label_size']:.2f} labels{extra} | "
                         f"{r['baseline']} | set-F1 {r['set_f1']:.3f} | set-F1 {r['chance']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    from clinseek_demo.demo import DEFAULT_PATIENTS, DEFAULT_SEED, ensure_demo

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=DEFAULT_PATIENTS)
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--db", type=Path, default=None, help="a cohort database instead of the demo")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    db = args.db or ensure_demo(args.patients, args.seed).db
    stats = compute(db, args.seed)
    print(json.dumps(stats, indent=2) if args.json else to_markdown(stats, args.patients, args.seed))


if __name__ == "__main__":
    main()
