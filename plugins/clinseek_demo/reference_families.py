"""ClinSeek-Bench's text task families (EHR-Bench's names and definitions), built from a cohort database.

`clinseek data tasks DB --families reference` writes them; the clinseek families of benchmark.py stay the default.
Definitions follow the reference (UCSC-VLAA/ClinSeekAgent, whose text benchmark is EHR-Bench from EHR-R1): each
risk family is anchored on an ED visit, an admission, an ICU stay or a discharge, and each decision family on the
next event of one table ("which items will the next <table> event hold?"). Every label reads only rows strictly
after the prediction time; docs/data.md has the table of cohorts, prediction times, label rules and candidates.

Prediction times (where clinseek is stricter than the reference, it says why):
- ED_Hospitalization / ED_Inpatient_Mortality / ED_ICU_Tranfer_12hour / ED_Critical_Outcomes: triage plus the
  first hour (ED intime + 1 h), earlier if the patient leaves the ED or is admitted before: the reference asks at
  ED departure, when the admission is often already on record (admittime precedes ED outtime), which would show
  the answer.
- ED_Reattendance_3day: 1 minute before ED departure (the reference measures the 72 h from outtime).
- Inpatient_Mortality / LengthOfStay_*: admittime + 24 h, alive and in hospital (the reference: the first 24 h).
- Readmission_*: the discharge time of an admission discharged alive (the reference anchors on the discharge).
- ICU_*: ICU intime + 24 h, still in the ICU and alive (the reference: the first 24 h of the stay).
- decision families: 1 second before the event whose items are the label (the reference: the event itself, with
  the events before it as context).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clinseek.errors import UserError

YES_NO = ["yes", "no"]
DISTRACTORS = 10  # decision candidates: the label plus this many other items of the table's vocabulary
SMALL_VOCAB = 30  # ... or the whole vocabulary when it is this small
POOL_FACTOR = 20  # decision families read events of at most per_task * POOL_FACTOR admissions / visits

_ASK = "Given the sequence of events that have occurred in the hospital so far, "
RISK = {
    # name: (anchor, question)
    "ED_Hospitalization": ("ed", "predict whether the patient will be admitted to the hospital after this emergency "
                                 "department visit. Answer yes or no."),
    "ED_Inpatient_Mortality": ("ed", "predict whether the patient will die during the hospitalization that follows "
                                     "this emergency department visit. Answer yes or no."),
    "ED_ICU_Tranfer_12hour": ("ed", "predict whether the patient will be transferred to an ICU within 12 hours after "
                                    "leaving the emergency department. Answer yes or no."),
    "ED_Reattendance_3day": ("ed_out", "predict whether the patient will return to the emergency department within "
                                       "72 hours after this visit. Answer yes or no."),
    "ED_Critical_Outcomes": ("ed", "predict whether the patient will die during the hospitalization or be "
                                   "transferred to an ICU within 12 hours after leaving the emergency department. "
                                   "Answer yes or no."),
    "Readmission_30day": ("discharge", "predict whether the patient will be readmitted to the hospital within 30 "
                                       "days of this discharge. Answer yes or no."),
    "Readmission_60day": ("discharge", "predict whether the patient will be readmitted to the hospital within 60 "
                                       "days of this discharge. Answer yes or no."),
    "Inpatient_Mortality": ("admission", "predict whether the patient will die during this hospitalization. "
                                         "Answer yes or no."),
    "LengthOfStay_3day": ("admission", "predict whether this hospital stay will last more than 3 days. "
                                       "Answer yes or no."),
    "LengthOfStay_7day": ("admission", "predict whether this hospital stay will last more than 7 days. "
                                       "Answer yes or no."),
    **{f"ICU_Mortality_{d}day": ("icu", f"predict whether the patient will die within {d} day{'s' * (d > 1)}. "
                                        "Answer yes or no.") for d in (1, 2, 3, 7, 14)},
    "ICU_Stay_7day": ("icu", "predict whether the patient will stay in the ICU for more than 7 days. "
                             "Answer yes or no."),
    "ICU_Stay_14day": ("icu", "predict whether the patient will stay in the ICU for more than 14 days. "
                              "Answer yes or no."),
    "ICU_Readmission": ("icu", "predict whether the patient will be admitted to an ICU again during this "
                               "hospitalization. Answer yes or no."),
}


@dataclass(frozen=True)
class Decision:
    """The next `table` event: rows sharing (key, time) after the cutoff; `value` is the label item of a row."""

    table: str
    what: str  # question wording: "the next <what>"
    time: str  # SQL for the event time (alias x is the table)
    value: str  # SQL for the label item
    key: str = "hadm"  # hadm: inside an admission; stay: inside an ED visit; subject: any time
    join: str = ""
    where: str = "TRUE"
    needs: tuple[str, ...] = ()
    ccsr: bool = False  # map ICD-10 codes (value) to CCSR category names


DECISIONS = {
    "labevents": Decision("labevents", "laboratory tests", "x.charttime", "d.label",
                          join="JOIN d_labitems d ON d.itemid = x.itemid", needs=("d_labitems",)),
    "microbiologyevents": Decision("microbiologyevents", "microbiology tests",
                                   "coalesce(x.charttime, CAST(x.chartdate AS TIMESTAMP))", "x.test_name"),
    "prescriptions": Decision("prescriptions", "prescriptions (drugs)", "x.starttime", "x.drug"),
    "emar": Decision("emar", "medication administrations (eMAR)", "x.charttime", "x.medication"),
    "poe": Decision("poe", "provider order entries (order types)", "x.ordertime", "x.order_type"),
    "transfers": Decision("transfers", "care units the patient is transferred to", "x.intime", "x.careunit",
                          where="x.eventtype <> 'discharge'"),
    "services": Decision("services", "services (clinical teams)", "x.transfertime", "x.curr_service"),
    "admissions": Decision("admissions", "admission types", "x.admittime", "x.admission_type", key="admit"),
    "omr": Decision("omr", "outpatient measurements (OMR result names)",
                    "CAST(x.chartdate AS TIMESTAMP) + INTERVAL 1 DAY", "x.result_name", key="subject"),
    "radiology": Decision("radiology", "radiology examinations", "x.charttime", "r.field_value",
                          join="JOIN radiology_detail r ON r.note_id = x.note_id AND r.field_name = 'exam_name'",
                          needs=("radiology_detail",)),
    # billing codes carry no time: the reference's patient databases date them 1 minute before discharge
    "diagnoses_icd": Decision("diagnoses_icd", "discharge diagnoses (ICD titles)",
                              "a.dischtime - INTERVAL 1 MINUTE", "d.long_title",
                              join="JOIN admissions a ON a.hadm_id = x.hadm_id JOIN d_icd_diagnoses d "
                                   "ON d.icd_code = x.icd_code AND d.icd_version = x.icd_version",
                              needs=("d_icd_diagnoses",)),
    "diagnoses_ccs": Decision("diagnoses_icd", "discharge diagnosis categories (CCSR)",
                              "a.dischtime - INTERVAL 1 MINUTE", "trim(x.icd_code)",
                              join="JOIN admissions a ON a.hadm_id = x.hadm_id", where="x.icd_version = 10",
                              ccsr=True),
    "procedures_icd": Decision("procedures_icd", "procedures (ICD titles)", "CAST(x.chartdate AS TIMESTAMP)",
                               "d.long_title", join="JOIN d_icd_procedures d ON d.icd_code = x.icd_code AND "
                                                    "d.icd_version = x.icd_version", needs=("d_icd_procedures",)),
    "chartevents": Decision("chartevents", "charted ICU items", "x.charttime", "d.label",
                            join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    "inputevents": Decision("inputevents", "ICU inputs", "x.starttime", "d.label",
                            join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    "outputevents": Decision("outputevents", "ICU outputs", "x.charttime", "d.label",
                             join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    "procedureevents": Decision("procedureevents", "ICU procedures", "x.starttime", "d.label",
                                join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    "datetimeevents": Decision("datetimeevents", "ICU date-time items", "x.charttime", "d.label",
                               join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    "ingredientevents": Decision("ingredientevents", "ICU ingredients", "x.starttime", "d.label",
                                 join="JOIN d_items d ON d.itemid = x.itemid", needs=("d_items",)),
    # ED diagnoses are coded at departure: the reference dates them 1 minute before the ED outtime
    "diagnosis": Decision("diagnosis", "ED diagnoses (ICD titles)", "e.outtime - INTERVAL 1 MINUTE", "x.icd_title",
                          key="stay", join="JOIN edstays e ON e.stay_id = x.stay_id"),
    "diagnosis_ccs": Decision("diagnosis", "ED diagnosis categories (CCSR)", "e.outtime - INTERVAL 1 MINUTE",
                              "trim(x.icd_code)", key="stay", join="JOIN edstays e ON e.stay_id = x.stay_id",
                              where="x.icd_version = 10", ccsr=True),
    "medrecon": Decision("medrecon", "home medications reconciled in the ED", "x.charttime", "x.name", key="stay"),
    "pyxis": Decision("pyxis", "medications dispensed in the ED (Pyxis)", "x.charttime", "x.name", key="stay"),
}
# reference families no MIMIC-IV table defines without a mapping this package does not ship
NOT_BUILT = {
    "prescriptions_atc": "needs an NDC -> ATC mapping",
    "medrecon_atc": "needs an NDC/GSN -> ATC mapping",
    "procedures_ccs": "needs the ICD -> CCS procedure mapping",
    "next_event": "not built yet: asks which table the next event belongs to",
}
REFERENCE_TASKS = tuple(RISK) + tuple(DECISIONS)


def _iso(ts) -> str:
    return pd.Timestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _qid(task: str, subject, hadm, tail: str = "") -> str:
    return f"{task}_{int(subject)}_{int(hadm) if pd.notna(hadm) else 'na'}{tail}"


def _row(task, task_type, subject, hadm, cutoff, question, label, candidates, stay=None, tail="") -> dict:
    row = {"qid": _qid(task, subject, hadm, tail), "subject_id": int(subject),
           "hadm_id": int(hadm) if pd.notna(hadm) else None}
    if stay is not None:
        row["stay_id"] = int(stay)
    return {**row, "prediction_time": _iso(cutoff), "task": task, "task_type": task_type,
            "question": _ASK + question, "candidates": candidates, "label": label}


# ---------------------------------------------------------------------------------------------------- risk
_ED_SQL = """
SELECT e.subject_id, e.hadm_id, e.stay_id, e.intime, e.outtime, a.admittime, a.deathtime,
       least(e.intime + INTERVAL 1 HOUR, e.outtime - INTERVAL 1 MINUTE,
             coalesce(a.admittime - INTERVAL 1 MINUTE, e.outtime)) AS cutoff,
       e.outtime - INTERVAL 1 MINUTE AS cutoff_out
FROM edstays e LEFT JOIN admissions a ON a.hadm_id = e.hadm_id
WHERE e.intime IS NOT NULL AND e.outtime > e.intime"""


def _risk_frame(con, anchor: str, tables: set[str]) -> pd.DataFrame:
    """One row per anchor with its cutoff and the post-cutoff facts the labels need."""
    if anchor in ("ed", "ed_out"):
        if "edstays" not in tables:
            return pd.DataFrame()
        cut = "cutoff" if anchor == "ed" else "cutoff_out"
        icu = ("(SELECT min(i.intime) FROM icustays i WHERE i.hadm_id = b.hadm_id AND i.intime > b.cutoff)"
               if "icustays" in tables else "NULL::TIMESTAMP")
        return con.execute(f"""
            WITH b AS (SELECT * EXCLUDE (cutoff, cutoff_out), {cut} AS cutoff FROM ({_ED_SQL}))
            SELECT b.*, {icu} AS icu_in,
                   (SELECT min(n.intime) FROM edstays n WHERE n.subject_id = b.subject_id
                     AND n.intime > b.outtime) AS next_ed
            FROM b WHERE b.cutoff > b.intime ORDER BY b.stay_id""").df()
    if anchor == "admission":
        return con.execute("""
            SELECT subject_id, hadm_id, admittime, dischtime, deathtime, admittime + INTERVAL 24 HOUR AS cutoff
            FROM admissions
            WHERE dischtime > admittime + INTERVAL 24 HOUR
              AND coalesce(deathtime, dischtime) > admittime + INTERVAL 24 HOUR
            ORDER BY hadm_id""").df()
    if anchor == "discharge":
        return con.execute("""
            SELECT a.subject_id, a.hadm_id, a.dischtime AS cutoff,
                   (SELECT min(n.admittime) FROM admissions n WHERE n.subject_id = a.subject_id
                     AND n.admittime > a.dischtime) AS next_admit
            FROM admissions a WHERE a.deathtime IS NULL AND a.dischtime > a.admittime
            ORDER BY a.hadm_id""").df()
    if "icustays" not in tables:
        return pd.DataFrame()
    # death: the admission's deathtime, else the patient's date of death (counted at the end of that day)
    return con.execute("""
        SELECT i.subject_id, i.hadm_id, i.stay_id, i.intime, i.outtime, i.intime + INTERVAL 24 HOUR AS cutoff,
               coalesce(a.deathtime, CAST(p.dod AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 SECOND) AS death,
               (SELECT min(j.intime) FROM icustays j WHERE j.hadm_id = i.hadm_id AND j.stay_id <> i.stay_id
                 AND j.intime >= i.outtime) AS next_icu
        FROM icustays i JOIN admissions a ON a.hadm_id = i.hadm_id JOIN patients p ON p.subject_id = i.subject_id
        WHERE i.outtime > i.intime + INTERVAL 24 HOUR
          AND coalesce(a.deathtime, a.dischtime) > i.intime + INTERVAL 24 HOUR
        ORDER BY i.stay_id""").df()


def _risk_label(task: str, r) -> bool:
    day = pd.Timedelta(days=1)
    if task.startswith("ED_"):
        died = pd.notna(r.deathtime)
        icu12 = pd.notna(r.icu_in) and r.icu_in < r.outtime + pd.Timedelta(hours=12)
        return {"ED_Hospitalization": pd.notna(r.admittime), "ED_Inpatient_Mortality": died,
                "ED_ICU_Tranfer_12hour": icu12, "ED_Critical_Outcomes": died or icu12,
                "ED_Reattendance_3day": pd.notna(r.next_ed) and r.next_ed <= r.outtime + pd.Timedelta(hours=72),
                }[task]
    if task.startswith("Readmission_"):
        return pd.notna(r.next_admit) and r.next_admit <= r.cutoff + int(task[12:14]) * day
    if task == "Inpatient_Mortality":
        return pd.notna(r.deathtime)
    if task.startswith("LengthOfStay_"):
        return r.dischtime - r.admittime > int(task[13]) * day
    if task.startswith("ICU_Mortality_"):
        return pd.notna(r.death) and r.death <= r.cutoff + int(task[14:].removesuffix("day")) * day
    if task.startswith("ICU_Stay_"):
        return r.outtime - r.intime >= int(task[9:].removesuffix("day")) * day
    return pd.notna(r.next_icu)  # ICU_Readmission


def risk_rows(con, task: str, tables: set[str]) -> list[dict]:
    anchor, question = RISK[task]
    frame = _risk_frame(con, anchor, tables)
    rows = []
    for r in frame.itertuples(index=False):
        stay = getattr(r, "stay_id", None)
        rows.append(_row(task, "risk_prediction", r.subject_id, r.hadm_id, r.cutoff, question,
                         ["yes" if _risk_label(task, r) else "no"], YES_NO, stay=stay,
                         tail=f"_{int(stay)}" if stay is not None else ""))
    return rows


# ---------------------------------------------------------------------------------------------------- decisions
def _keys(spec: Decision) -> tuple[str, str, str]:
    """(key column of the event rows, the anchors' table, the SQL condition an event time g.t must meet)."""
    if spec.key == "stay":  # inside the ED visit
        return "x.stay_id", "edstays", "g.t >= k.intime AND g.t <= k.outtime"
    if spec.key == "subject":
        return "x.subject_id", "patients", "TRUE"
    if spec.key == "admit":  # the admission itself: asked a second before it is on record
        return "x.hadm_id", "admissions", "TRUE"
    # an event at admittime (first service, first ward) is asked a second before the admission is on record
    return "x.hadm_id", "admissions", "g.t >= k.admittime AND g.t <= coalesce(k.deathtime, k.dischtime)"


def decision_rows(con, task: str, tables: set[str], per_task: int, seed: int) -> list[dict]:
    spec = DECISIONS[task]
    if not {spec.table, *spec.needs} <= tables or (spec.key == "stay" and "edstays" not in tables):
        return []
    key, anchors, inside = _keys(spec)
    kcol = key.split(".")[1]
    pool = per_task * POOL_FACTOR
    # a pseudo-random sample of anchors (by a seeded hash) bounds the work on a full MIMIC-IV
    k_sql = f"SELECT * FROM {anchors} ORDER BY hash({kcol}, {seed}) LIMIT {pool}"
    hadm = {"stay": "k.hadm_id", "subject": "NULL::INTEGER"}.get(spec.key, "k.hadm_id")
    df = con.execute(f"""
        WITH k AS ({k_sql}),
        ev AS (SELECT x.subject_id, {key} AS kid, {spec.time} AS t, {spec.value} AS v
               FROM {spec.table} x {spec.join}
               WHERE {key} IN (SELECT {kcol} FROM k) AND {spec.where}),
        g AS (SELECT subject_id, kid, t, list(DISTINCT v ORDER BY v) AS label FROM ev
              WHERE t IS NOT NULL AND v IS NOT NULL GROUP BY ALL),
        ok AS (SELECT g.*, {hadm} AS hadm_id FROM g JOIN k ON k.{kcol} = g.kid WHERE {inside}),
        one AS (SELECT *, row_number() OVER (PARTITION BY kid ORDER BY hash(t, {seed})) AS rn FROM ok)
        SELECT subject_id, kid, hadm_id, t, label FROM one WHERE rn = 1 ORDER BY kid, t""").df()
    if spec.ccsr:
        from clinseek_demo.benchmark import ccsr_label

        df["label"] = df["label"].apply(lambda codes: ccsr_label(codes))
        vocab = sorted({c for lab in df["label"] for c in lab} | set(_ccsr_vocab()))
    else:
        vocab = [v for (v,) in con.execute(
            f"SELECT DISTINCT {spec.value} AS v FROM {spec.table} x {spec.join} WHERE {spec.where} "
            f"AND {spec.value} IS NOT NULL ORDER BY v").fetchall()]
    rng = np.random.default_rng([seed, REFERENCE_TASKS.index(task) + 2000])
    question = (f"predict the next {spec.what} for this patient: which of the candidates will the next "
                f"{spec.table} event hold? Choose all that apply.")
    rows = []
    for r in df.itertuples(index=False):
        label = [str(v) for v in r.label]
        if not label:
            continue
        if len(vocab) <= SMALL_VOCAB:
            cands = sorted(set(vocab) | set(label))
        else:
            others = [v for v in vocab if v not in set(label)]
            pick = rng.choice(len(others), min(DISTRACTORS, len(others)), replace=False) if others else []
            cands = sorted(label + [others[i] for i in pick])
        t = pd.Timestamp(r.t)
        stay = int(r.kid) if spec.key == "stay" else None
        rows.append(_row(task, "decision_making", r.subject_id, r.hadm_id, t - pd.Timedelta(seconds=1), question,
                         label, cands, stay=stay,
                         tail=(f"_{stay}" if stay else "") + f"_{t.strftime('%Y%m%d%H%M%S')}"))
    return rows


def _ccsr_vocab() -> list[str]:
    from clinseek_demo import catalog

    return [f"{c} {n}" for c, n in catalog.CCSR_NAMES.items()]


# ---------------------------------------------------------------------------------------------------- all
def reference_rows(db: Path, tasks, per_task: int, seed: int) -> dict[str, list[dict]]:
    """task -> its rows (not yet sampled), read from the cohort database opened read-only."""
    import duckdb

    unknown = [t for t in tasks if t not in REFERENCE_TASKS]
    if unknown:
        hint = f"choose from {', '.join(REFERENCE_TASKS)}"
        if any(t in NOT_BUILT for t in unknown):
            hint = "; ".join(f"{t}: {NOT_BUILT[t]}" for t in unknown if t in NOT_BUILT)
        raise UserError(f"unknown reference task(s) {unknown}", where="--task", hint=hint)
    if not Path(db).exists():
        raise UserError(f"cohort database not found: {db}", hint="build one with `clinseek data demo --out DIR`")
    con = duckdb.connect(str(db), read_only=True)
    try:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if not {"patients", "admissions"} <= tables:
            raise UserError(f"{db} lacks the MIMIC-IV tables patients and admissions",
                            hint="build it with `clinseek data demo` or `clinseek data import-mimic-iv`")
        return {t: risk_rows(con, t, tables) if t in RISK else decision_rows(con, t, tables, per_task, seed)
                for t in tasks}
    finally:
        con.close()


def build_reference_tasks(db: Path, out: Path, *, per_task: int = 40, seed: int = 7, balance: bool = True,
                          tasks=REFERENCE_TASKS, with_input: bool = True):
    """Write the reference families' rows for the cohort in `db` to `out` (one JSON object per line), sampled to
    `per_task` per family (yes/no families up to half positives with `balance`), with each row's curated `input`."""
    import json
    from itertools import zip_longest

    from clinseek_demo.benchmark import TaskBuildReport, _balanced, add_inputs

    by_task = reference_rows(Path(db), list(tasks), per_task, seed)
    groups, counts, positives = [], {}, {}
    for task, rows in by_task.items():
        rng = np.random.default_rng([seed, REFERENCE_TASKS.index(task) + 3000])
        rows = _balanced(rows, per_task, rng, balance and task in RISK)
        rows.sort(key=lambda r: r["qid"])
        counts[task] = len(rows)
        positives[task] = sum(r["label"] == ["yes"] for r in rows) if task in RISK else 0
        groups.append(rows)
    # interleaved, so the first N rows (`apply --limit N`) sample every family
    all_rows = [r for g in zip_longest(*groups) for r in g if r is not None]
    if len({r["qid"] for r in all_rows}) != len(all_rows):  # pragma: no cover - a bug, not a user error
        raise RuntimeError("duplicate qid in the reference families")
    if with_input:
        add_inputs(Path(db), all_rows)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(out.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in all_rows:
            fh.write(json.dumps(r) + "\n")
    tmp.replace(out)
    return TaskBuildReport(path=out, counts=counts, positives=positives)
