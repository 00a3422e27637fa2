"""The ClinSeek-style benchmark: task rows built from a cohort database (synthetic or imported MIMIC-IV).

Every label is computed from rows after the task's prediction time (or from the hidden image truth for CXR
questions); every prediction time falls inside the admission, while the patient is alive and in hospital. The
question names what to predict, never the evidence: the agent has to look it up.

Families and tasks:
- risk_prediction (yes/no): mortality, los_gt_3, los_gt_7, readmission_30d, icu_transfer_24h
- decision_making (candidate lists): diagnosis_ccsr, lab_orders_24h
- multimodal: cxr_finding_presence (yes/no), cxr_findings (which of five), cxr_change (new/resolved/persistent)

Every row also carries `input`, the curated evidence package of `agent.evidence: curated`: the patient's most recent
events of the 24 hours before the prediction time, at most 100, written by the ehr toolset's curator (same patient,
cutoff and masking rules as the tools). It is text only: CXR rows get the same events window and no image.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from clinseek_demo import catalog
from clinseek_demo.events import FINDINGS
from clinseek.errors import UserError

RISK_TASKS = ("mortality", "los_gt_3", "los_gt_7", "readmission_30d", "icu_transfer_24h")
DECISION_TASKS = ("diagnosis_ccsr", "lab_orders_24h")
MULTIMODAL_TASKS = ("cxr_finding_presence", "cxr_findings", "cxr_change")
ALL_TASKS = RISK_TASKS + DECISION_TASKS + MULTIMODAL_TASKS
TASK_TYPE = {**{t: "risk_prediction" for t in RISK_TASKS}, **{t: "decision_making" for t in DECISION_TASKS},
             **{t: "multimodal" for t in MULTIMODAL_TASKS}}
FINDING_NAME = {"cardiomegaly": "cardiomegaly", "pleural_effusion": "pleural effusion",
                "consolidation": "consolidation", "pulmonary_edema": "pulmonary edema", "pneumothorax": "pneumothorax"}
NO_FINDING = "no finding"
CHANGE = ("new", "resolved", "persistent")
YES_NO = ["yes", "no"]
CCSR_CANDIDATES = 10
INPUT_WINDOW_HOURS = 24  # the reference benchmark's curated input: most recent events of the last 24 h, at most 100
INPUT_MAX_EVENTS = 100
ICU_HORIZONS = (12, 24, 48, 72)

QUESTIONS = {
    "mortality": "Based on the patient's record up to the prediction time, will the patient die during this hospital "
                 "admission? Answer yes or no.",
    "los_gt_3": "Will this hospital admission last longer than 3 days in total (from admission to discharge)? "
                "Answer yes or no.",
    "los_gt_7": "Will this hospital admission last longer than 7 days in total (from admission to discharge)? "
                "Answer yes or no.",
    "readmission_30d": "The patient is about to be discharged alive. Will the patient be readmitted to the hospital "
                       "within 30 days of this discharge? Answer yes or no.",
    "icu_transfer_24h": "The patient is on a hospital ward. Will the patient be transferred to an intensive care "
                        "unit within the next 24 hours? Answer yes or no.",
    "diagnosis_ccsr": "Which of the candidate diagnosis categories (CCSR) will be coded as discharge diagnoses for "
                      "this admission? Choose all that apply.",
    "lab_orders_24h": "Which of the candidate laboratory tests will be drawn for this patient in the next 24 hours? "
                      "Choose all that apply.",
    "cxr_finding_presence": "Does the chest X-ray of study {study_id}, taken at {study_time}, show {finding}? "
                            "Answer yes or no.",
    "cxr_findings": "Which of the candidate findings are present on the chest X-ray of study {study_id}, taken at "
                    "{study_time}? Choose all that apply, or 'no finding'.",
    "cxr_change": "Compare the chest X-ray of study {study_id} (taken at {study_time}) with the previous study "
                  "{prior_study_id} (taken at {prior_time}). How has {finding} changed? Answer new, resolved or "
                  "persistent.",
}


@dataclass
class TaskBuildReport:
    path: Path
    counts: dict[str, int]
    positives: dict[str, int]


def _iso(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _rng(seed: int, task: str) -> np.random.Generator:
    return np.random.default_rng([seed, ALL_TASKS.index(task) + 1000])


def load(db: Path) -> dict[str, pd.DataFrame]:
    """The tables the task builder reads, fetched once (the cohort database is opened read-only)."""
    import duckdb

    if not Path(db).exists():
        raise UserError(f"cohort database not found: {db}", hint="build one with `clinseek data demo --out DIR`")
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        need = {"admissions", "icustays", "labevents", "diagnoses_icd"}
        if need - tables:
            raise UserError(f"{db} lacks MIMIC-IV tables {sorted(need - tables)}",
                            hint="build it with `clinseek data demo` or `clinseek data import-mimic-iv`")
        q = lambda sql: con.execute(sql).df()  # noqa: E731
        out = {
            "admissions": q("SELECT subject_id, hadm_id, admittime, dischtime, deathtime FROM admissions"),
            "icustays": q("SELECT hadm_id, intime FROM icustays"),
            "diagnoses": q("SELECT hadm_id, icd_code, icd_version FROM diagnoses_icd"),
        }
        if {"cxr_metadata", "cxr_labels", "radiology"} <= tables:
            out["cxr"] = q("SELECT dicom_id, subject_id, study_id, study_datetime, path, ViewPosition "
                           "FROM cxr_metadata WHERE ViewPosition IN ('PA', 'AP')")
            out["cxr_labels"] = q("SELECT dicom_id, label, present FROM cxr_labels")
            out["radiology"] = q("SELECT subject_id, charttime, storetime FROM radiology")
        out["db"] = Path(db)  # labevents stay in DuckDB: MIMIC-IV has 158M lab rows
        return out
    finally:
        con.close()


def _cutoffs(adm: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One prediction time per admission: 24 or 48 hours after admission, kept only while alive and in hospital."""
    hours = rng.choice([24, 48], len(adm))
    cut = adm["admittime"] + pd.to_timedelta(hours, unit="h")
    end = adm["deathtime"].fillna(adm["dischtime"])
    out = adm.assign(cutoff=cut, horizon=hours)
    return out[(cut < end) & (cut < adm["dischtime"])]


def _balanced(rows: list[dict], n: int, rng: np.random.Generator, balance: bool) -> list[dict]:
    if len(rows) <= n:
        return rows
    if not balance:
        keep = rng.choice(len(rows), n, replace=False)
        return [rows[i] for i in sorted(keep)]
    pick = lambda xs, k: [xs[i] for i in sorted(rng.choice(len(xs), k, replace=False))]  # noqa: E731
    if rows[0]["task"] == "cxr_change":  # up to a third per answer, filled from the others
        groups = [[r for r in rows if r["label"] == [c]] for c in CHANGE]
        take = [0, 0, 0]
        left = n
        while left:
            open_ = [i for i in range(3) if take[i] < len(groups[i])]
            for i in open_[:left]:
                take[i] += 1
                left -= 1
        return [r for g, k in zip(groups, take) for r in pick(g, k)]
    pos = [r for r in rows if r["label"] == ["yes"]]
    neg = [r for r in rows if r["label"] != ["yes"]]
    n_pos = min(len(pos), n // 2)
    n_neg = min(len(neg), n - n_pos)
    n_pos = min(len(pos), n - n_neg)
    return pick(pos, n_pos) + pick(neg, n_neg)


def _row(task: str, subject_id, hadm_id, cutoff, label: list[str], candidates: list[str], question: str | None = None,
         qid_tail: str = "", **extra) -> dict:
    return {"qid": f"{task}-{hadm_id}{qid_tail}", "subject_id": int(subject_id), "hadm_id": int(hadm_id),
            "prediction_time": _iso(cutoff), "task": task, "task_type": TASK_TYPE[task],
            "question": question or QUESTIONS[task], "candidates": candidates, "label": label, **extra}


# ---------------------------------------------------------------------------------------------------- risk
def risk_rows(t: dict[str, pd.DataFrame], task: str, seed: int) -> list[dict]:
    adm = t["admissions"].sort_values("hadm_id", kind="stable").reset_index(drop=True)
    rng = _rng(seed, task)
    rows = []
    if task == "readmission_30d":
        alive = adm[adm["deathtime"].isna() & adm["dischtime"].notna()]
        nxt = adm.sort_values(["subject_id", "admittime"]).groupby("subject_id")["admittime"].shift(-1)
        nxt = nxt.reindex(alive.index)
        for r, next_admit in zip(alive.itertuples(index=False), nxt):
            cutoff = r.dischtime - pd.Timedelta(hours=2)
            if cutoff <= r.admittime:
                continue
            yes = pd.notna(next_admit) and r.dischtime < next_admit <= r.dischtime + pd.Timedelta(days=30)
            rows.append(_row(task, r.subject_id, r.hadm_id, cutoff, ["yes" if yes else "no"], YES_NO))
        return rows
    if task == "icu_transfer_24h":
        # ward patients are asked at several points of the stay: transfers are rare at any single one
        cut = pd.concat([adm.assign(cutoff=adm["admittime"] + pd.Timedelta(hours=h), horizon=h)
                         for h in ICU_HORIZONS], ignore_index=True)
        end = cut["deathtime"].fillna(cut["dischtime"])
        cut = cut[cut["cutoff"] < end]
    else:
        cut = _cutoffs(adm, rng)
    if task == "icu_transfer_24h":
        first_icu = t["icustays"].groupby("hadm_id")["intime"].min()
        cut = cut.assign(icu_in=cut["hadm_id"].map(first_icu))
        cut = cut[~(cut["icu_in"] <= cut["cutoff"])]  # on the ward: no ICU stay started by the cutoff
    for r in cut.itertuples(index=False):
        if task == "mortality":
            yes = pd.notna(r.deathtime) and r.deathtime > r.cutoff
        elif task in ("los_gt_3", "los_gt_7"):
            days = 3 if task == "los_gt_3" else 7
            if r.cutoff >= r.admittime + pd.Timedelta(days=days):
                continue
            yes = r.dischtime - r.admittime > pd.Timedelta(days=days)
        else:  # icu_transfer_24h
            yes = pd.notna(r.icu_in) and r.cutoff < r.icu_in <= r.cutoff + pd.Timedelta(hours=24)
        rows.append(_row(task, r.subject_id, r.hadm_id, r.cutoff, ["yes" if yes else "no"], YES_NO,
                         qid_tail=f"-{r.horizon}h"))
    return rows


# ---------------------------------------------------------------------------------------------------- decisions
def ccsr_label(codes: Iterable[str]) -> list[str]:
    from clinseek_demo.dictionaries import ccsr_map

    m = ccsr_map()
    cats = {m.get(c) for c in codes}
    return sorted(f"{c} {catalog.CCSR_NAMES[c]}" for c in cats if c in catalog.CCSR_NAMES)


def decision_rows(t: dict[str, pd.DataFrame], task: str, seed: int) -> list[dict]:
    adm = t["admissions"].sort_values("hadm_id", kind="stable").reset_index(drop=True)
    rng = _rng(seed, task)
    cut = _cutoffs(adm, rng)
    rows = []
    if task == "diagnosis_ccsr":
        dx = t["diagnoses"][t["diagnoses"]["icd_version"] == 10]
        codes = dx.groupby("hadm_id")["icd_code"].apply(lambda s: [c.strip() for c in s])
        pool = sorted(f"{c} {n}" for c, n in catalog.CCSR_NAMES.items())
        for r in cut.itertuples(index=False):
            label = ccsr_label(codes.get(r.hadm_id, []))
            if not label:
                continue
            others = [c for c in pool if c not in label]
            k = max(CCSR_CANDIDATES - len(label), 2)
            cands = sorted(label + [others[i] for i in rng.choice(len(others), min(k, len(others)), replace=False)])
            rows.append(_row(task, r.subject_id, r.hadm_id, r.cutoff, label, cands, qid_tail=f"-{r.horizon}h"))
        return rows
    # lab_orders_24h
    group_of = {}
    for group, spec in catalog.LAB_GROUPS.items():
        for key in spec["items"]:
            item = catalog.lab_items().get(key)
            if item:
                group_of[item["itemid"]] = group
    drawn = _items_drawn_next_24h(t["db"], cut[["hadm_id", "cutoff"]], sorted(group_of))
    cands = list(catalog.LAB_GROUPS)
    for r in cut.itertuples(index=False):
        items = drawn.get((r.hadm_id, r.cutoff))
        if not items:
            continue
        groups = {group_of[i] for i in items}
        label = [c for c in cands if c in groups]
        rows.append(_row(task, r.subject_id, r.hadm_id, r.cutoff, label, cands, qid_tail=f"-{r.horizon}h"))
    return rows


def _items_drawn_next_24h(db: Path, cut: pd.DataFrame, itemids: list[int]) -> dict:
    """(hadm_id, cutoff) -> lab itemids with a charttime in (cutoff, cutoff + 24 h], joined inside DuckDB."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        con.register("cut", cut)
        df = con.execute(f"""
            SELECT c.hadm_id, c.cutoff, list(DISTINCT l.itemid) AS items
            FROM cut c JOIN labevents l ON l.hadm_id = c.hadm_id
             AND l.charttime > c.cutoff AND l.charttime <= c.cutoff + INTERVAL 24 HOUR
            WHERE l.itemid IN ({", ".join(str(i) for i in itemids)})
            GROUP BY c.hadm_id, c.cutoff""").df()
    finally:
        con.close()
    return {(h, pd.Timestamp(c)): list(i) for h, c, i in zip(df["hadm_id"], df["cutoff"], df["items"])}


# ---------------------------------------------------------------------------------------------------- images
def _studies(t: dict[str, pd.DataFrame], seed: int) -> pd.DataFrame:
    """Frontal studies inside an admission, with a cutoff after the image but before its report is signed."""
    cxr = t["cxr"].sort_values(["subject_id", "study_datetime", "dicom_id"]).reset_index(drop=True)
    adm = t["admissions"]
    # a study's report: the patient's radiology note nearest in time (within 2 h; exact in the demo)
    rad = t["radiology"].rename(columns={"charttime": "report_time"}).dropna(subset=["report_time"])
    cxr = pd.merge_asof(cxr.sort_values("study_datetime"), rad.sort_values("report_time"), left_on="study_datetime",
                        right_on="report_time", by="subject_id", direction="nearest",
                        tolerance=pd.Timedelta(hours=2))
    cxr = cxr.sort_values(["subject_id", "study_datetime", "dicom_id"]).reset_index(drop=True)
    m = cxr.merge(adm, on="subject_id")
    m = m[(m["study_datetime"] >= m["admittime"] - pd.Timedelta(hours=12)) & (m["study_datetime"] < m["dischtime"])]
    rng = np.random.default_rng([seed, 77])
    delay = pd.to_timedelta(rng.uniform(10, 50, len(m)), unit="m")
    cutoff = np.maximum(m["study_datetime"] + delay, m["admittime"] + pd.Timedelta(minutes=1))
    m = m.assign(cutoff=cutoff.dt.floor("min"))
    end = m["deathtime"].fillna(m["dischtime"])
    ok = (m["cutoff"] < end) & (m["storetime"].isna() | (m["cutoff"] < m["storetime"]))
    labels = t["cxr_labels"]
    present = labels[labels["present"] & (labels["label"] != "no_finding")].groupby("dicom_id")["label"].apply(set)
    m = m[ok].assign(findings=lambda d: d["dicom_id"].map(present))
    m["findings"] = m["findings"].apply(lambda x: x if isinstance(x, set) else set())
    return m.drop_duplicates("dicom_id").reset_index(drop=True)


def multimodal_rows(t: dict[str, pd.DataFrame], task: str, seed: int, image_root: Path | None) -> list[dict]:
    if "cxr" not in t:
        return []
    rng = _rng(seed, task)
    st = _studies(t, seed)
    path = (lambda p: str(image_root / p)) if image_root else (lambda p: p)  # noqa: E731
    rows = []
    if task in ("cxr_finding_presence", "cxr_findings"):
        for r in st.itertuples(index=False):
            fmt = {"study_id": r.study_id, "study_time": _iso(r.study_datetime)}
            common = dict(study_ids=[int(r.study_id)], image_paths=[path(r.path)])
            if task == "cxr_finding_presence":
                # ask about a present finding half of the time, so "no" is not always right
                have = sorted(r.findings)
                f = (have[int(rng.integers(len(have)))] if have and rng.random() < 0.5
                     else FINDINGS[int(rng.integers(len(FINDINGS)))])
                q = QUESTIONS[task].format(finding=FINDING_NAME[f], **fmt)
                rows.append(_row(task, r.subject_id, r.hadm_id, r.cutoff, ["yes" if f in r.findings else "no"],
                                 YES_NO, q, qid_tail=f"-{r.dicom_id[:8]}-{f}", **common))
            else:
                label = [FINDING_NAME[f] for f in FINDINGS if f in r.findings] or [NO_FINDING]
                rows.append(_row(task, r.subject_id, r.hadm_id, r.cutoff, label,
                                 [FINDING_NAME[f] for f in FINDINGS] + [NO_FINDING],
                                 QUESTIONS[task].format(**fmt), qid_tail=f"-{r.dicom_id[:8]}", **common))
        return rows
    # cxr_change: consecutive frontal studies of one admission
    for hadm, g in st.groupby("hadm_id", sort=True):
        g = g.sort_values("study_datetime")
        for prev, cur in zip(g.iloc[:-1].itertuples(index=False), g.iloc[1:].itertuples(index=False)):
            either = sorted(prev.findings | cur.findings)
            if not either:
                continue
            f = either[int(rng.integers(len(either)))]
            label = "persistent" if f in prev.findings and f in cur.findings else (
                "new" if f in cur.findings else "resolved")
            q = QUESTIONS[task].format(study_id=cur.study_id, study_time=_iso(cur.study_datetime),
                                       prior_study_id=prev.study_id, prior_time=_iso(prev.study_datetime),
                                       finding=FINDING_NAME[f])
            rows.append(_row(task, cur.subject_id, hadm, cur.cutoff, [label], list(CHANGE), q,
                             qid_tail=f"-{cur.dicom_id[:8]}-{f}", study_ids=[int(prev.study_id), int(cur.study_id)],
                             image_paths=[path(prev.path), path(cur.path)]))
    return rows


def add_inputs(db: Path, rows: list[dict], *, window_hours: float = INPUT_WINDOW_HOURS,
               max_events: int = INPUT_MAX_EVENTS, workers: int | None = None) -> None:
    """Set each row's `input` (in place) to the ehr curator's package for the row's patient and prediction time.

    One read-only EhrToolset serves all rows; rows run on a few threads because DuckDB releases the GIL while a
    query runs (the toolset is built for concurrent episodes)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    from clinseek.tasks import Task
    from clinseek.toolsets import Binding
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    if not rows:
        return
    toolset = EhrToolset(EhrConfig(database=str(db)), None)
    toolset.open()
    try:
        def one(row: dict) -> str:
            task = Task.model_validate({k: v for k, v in row.items() if k != "input"})
            return toolset.curate(Binding.from_task(task), window_hours, max_events)

        # rows about the same patient at the same time share one package
        firsts = list({(r["subject_id"], r["prediction_time"]): r for r in reversed(rows)}.values())
        n = workers or min(4, os.cpu_count() or 1)
        if n <= 1:
            packages = [one(r) for r in firsts]
        else:
            with ThreadPoolExecutor(max_workers=n) as pool:
                packages = list(pool.map(one, firsts))
    finally:
        toolset.close()
    by_key = {(r["subject_id"], r["prediction_time"]): text for r, text in zip(firsts, packages)}
    for row in rows:
        row["input"] = by_key[(row["subject_id"], row["prediction_time"])]


def build_tasks(db: Path, out: Path, *, per_task: int = 50, seed: int = 7, balance: bool = True,
                tasks: Iterable[str] = ALL_TASKS, image_root: Path | None = None,
                with_input: bool = True) -> TaskBuildReport:
    """Write ClinSeek-Bench rows (one JSON object per line) for the cohort in `db` to `out`; with `with_input`,
    each row carries its curated evidence package (see add_inputs)."""
    unknown = set(tasks) - set(ALL_TASKS)
    if unknown:
        raise UserError(f"unknown task(s) {sorted(unknown)}", hint=f"choose from {', '.join(ALL_TASKS)}")
    t = load(Path(db))
    per_task_rows, counts, positives = [], {}, {}
    for task in tasks:
        if task in RISK_TASKS:
            rows = risk_rows(t, task, seed)
        elif task in DECISION_TASKS:
            rows = decision_rows(t, task, seed)
        else:
            rows = multimodal_rows(t, task, seed, image_root)
        yes_no = task in RISK_TASKS or task == "cxr_finding_presence"
        rows = _balanced(rows, per_task, _rng(seed, task), balance and (yes_no or task == "cxr_change"))
        rows.sort(key=lambda r: r["qid"])
        counts[task] = len(rows)
        positives[task] = sum(r["label"] == ["yes"] for r in rows) if yes_no else 0
        per_task_rows.append(rows)
    # interleave the tasks, so the first N rows (`apply --limit N`) sample every family
    all_rows = [r for group in zip_longest(*per_task_rows) for r in group if r is not None]
    seen = set()
    for r in all_rows:
        if r["qid"] in seen:  # pragma: no cover - a bug, not a user error
            raise RuntimeError(f"duplicate qid {r['qid']}")
        seen.add(r["qid"])
    if with_input:
        add_inputs(Path(db), all_rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in all_rows:
            fh.write(json.dumps(r, sort_keys=False) + "\n")
    tmp.replace(out)
    return TaskBuildReport(path=out, counts=counts, positives=positives)
