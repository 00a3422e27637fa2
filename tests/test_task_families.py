"""ClinSeek-Bench's text families (`--families reference`): names, fields, and every label recomputed here by SQL
from the rows strictly after the prediction time, on the synthetic cohort and on a tiny MIMIC-IV import."""
from __future__ import annotations

import gzip
import json
import shutil
from collections import defaultdict
from datetime import datetime, timedelta

import duckdb
import pytest
from click.testing import CliRunner

from clinseek.tasks import Task
from clinseek_demo.benchmark import ccsr_label
from clinseek_demo.build import build_cohort
from clinseek_demo.importer import import_mimic_iv
from clinseek_demo.reference_families import DECISIONS, NOT_BUILT, REFERENCE_TASKS, RISK, reference_rows

ALL = 10_000  # per_task large enough that every anchor is kept
MIMIC_ONLY = {"emar", "poe", "radiology", "procedureevents", "datetimeevents", "ingredientevents"}


def _t(s: str) -> datetime:
    return datetime.strptime(s, "%Y-%m-%d %H:%M:%S")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("families")
    build_cohort(out, patients=80, seed=5, images=False)
    db = out / "cohort.duckdb"
    rows = reference_rows(db, REFERENCE_TASKS, ALL, 5)
    con = duckdb.connect(str(db), read_only=True)
    yield db, rows, con
    con.close()


# ---------------------------------------------------------------------------------------------------- recompute
def _one(con, sql, *args) -> bool:
    return con.execute(f"SELECT count(*) > 0 FROM ({sql})", list(args)).fetchone()[0]


def risk_label(con, r: dict) -> str:
    """The label from rows after the cutoff only, written independently of the builder."""
    task, cut, days = r["task"], _t(r["prediction_time"]), None
    stay, hadm, subj = r.get("stay_id"), r["hadm_id"], r["subject_id"]
    icu12 = ("SELECT 1 FROM icustays i JOIN edstays e ON e.hadm_id = i.hadm_id WHERE e.stay_id = ? "
             "AND i.intime > ? AND i.intime < e.outtime + INTERVAL 12 HOUR")
    died = ("SELECT 1 FROM admissions a JOIN edstays e ON e.hadm_id = a.hadm_id WHERE e.stay_id = ? "
            "AND a.deathtime > ?")
    if task == "ED_Hospitalization":
        yes = _one(con, "SELECT 1 FROM admissions a JOIN edstays e ON e.hadm_id = a.hadm_id "
                        "WHERE e.stay_id = ? AND a.admittime > ?", stay, cut)
    elif task == "ED_Inpatient_Mortality":
        yes = _one(con, died, stay, cut)
    elif task == "ED_ICU_Tranfer_12hour":
        yes = _one(con, icu12, stay, cut)
    elif task == "ED_Critical_Outcomes":
        yes = _one(con, icu12, stay, cut) or _one(con, died, stay, cut)
    elif task == "ED_Reattendance_3day":
        yes = _one(con, "SELECT 1 FROM edstays n JOIN edstays e ON e.subject_id = n.subject_id WHERE e.stay_id = ? "
                        "AND n.intime > ? AND n.intime > e.outtime AND n.intime <= e.outtime + INTERVAL 72 HOUR",
                   stay, cut)
    elif task.startswith("Readmission_"):
        days = int(task[12:14])
        yes = _one(con, "SELECT 1 FROM admissions WHERE subject_id = ? AND admittime > ? AND admittime <= ?",
                   subj, cut, cut + timedelta(days=days))
    elif task == "Inpatient_Mortality":
        yes = _one(con, "SELECT 1 FROM admissions WHERE hadm_id = ? AND deathtime > ?", hadm, cut)
    elif task.startswith("LengthOfStay_"):
        yes = _one(con, "SELECT 1 FROM admissions WHERE hadm_id = ? AND dischtime > ? "
                        "AND dischtime - admittime > ?", hadm, cut, timedelta(days=int(task[13])))
    elif task.startswith("ICU_Mortality_"):
        days = int(task[14:-3])
        yes = _one(con, "SELECT 1 FROM admissions a JOIN patients p USING (subject_id) WHERE a.hadm_id = ? AND "
                        "coalesce(a.deathtime, CAST(p.dod AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 SECOND) "
                        "BETWEEN ? AND ?", hadm, cut + timedelta(seconds=1), cut + timedelta(days=days))
    elif task.startswith("ICU_Stay_"):
        yes = _one(con, "SELECT 1 FROM icustays WHERE stay_id = ? AND outtime > ? AND outtime - intime >= ?",
                   stay, cut, timedelta(days=int(task[9:-3])))
    else:
        assert task == "ICU_Readmission"
        yes = _one(con, "SELECT 1 FROM icustays j JOIN icustays i ON i.hadm_id = j.hadm_id WHERE i.stay_id = ? "
                        "AND j.stay_id <> i.stay_id AND j.intime > ?", stay, cut)
    return "yes" if yes else "no"


# task -> SQL giving (event time, item) of the rows that can hold the label, for the row's key (?)
EVENTS = {
    "labevents": ("hadm_id", "SELECT l.charttime, d.label FROM labevents l JOIN d_labitems d ON d.itemid = l.itemid "
                             "WHERE l.hadm_id = ?"),
    "microbiologyevents": ("hadm_id", "SELECT coalesce(charttime, chartdate), test_name FROM microbiologyevents "
                                      "WHERE hadm_id = ?"),
    "prescriptions": ("hadm_id", "SELECT starttime, drug FROM prescriptions WHERE hadm_id = ?"),
    "transfers": ("hadm_id", "SELECT intime, careunit FROM transfers WHERE hadm_id = ? AND eventtype <> 'discharge'"),
    "services": ("hadm_id", "SELECT transfertime, curr_service FROM services WHERE hadm_id = ?"),
    "admissions": ("hadm_id", "SELECT admittime, admission_type FROM admissions WHERE hadm_id = ?"),
    "omr": ("subject_id", "SELECT chartdate + INTERVAL 1 DAY, result_name FROM omr WHERE subject_id = ?"),
    "diagnoses_icd": ("hadm_id", "SELECT a.dischtime - INTERVAL 1 MINUTE, d.long_title FROM diagnoses_icd x "
                                 "JOIN admissions a USING (hadm_id) JOIN d_icd_diagnoses d "
                                 "ON d.icd_code = x.icd_code AND d.icd_version = x.icd_version WHERE x.hadm_id = ?"),
    "diagnoses_ccs": ("hadm_id", "SELECT a.dischtime - INTERVAL 1 MINUTE, trim(x.icd_code) FROM diagnoses_icd x "
                                 "JOIN admissions a USING (hadm_id) WHERE x.hadm_id = ? AND x.icd_version = 10"),
    "procedures_icd": ("hadm_id", "SELECT x.chartdate, d.long_title FROM procedures_icd x JOIN d_icd_procedures d "
                                  "ON d.icd_code = x.icd_code AND d.icd_version = x.icd_version WHERE x.hadm_id = ?"),
    "chartevents": ("hadm_id", "SELECT c.charttime, d.label FROM chartevents c JOIN d_items d USING (itemid) "
                               "WHERE c.hadm_id = ?"),
    "inputevents": ("hadm_id", "SELECT c.starttime, d.label FROM inputevents c JOIN d_items d USING (itemid) "
                               "WHERE c.hadm_id = ?"),
    "outputevents": ("hadm_id", "SELECT c.charttime, d.label FROM outputevents c JOIN d_items d USING (itemid) "
                                "WHERE c.hadm_id = ?"),
    "diagnosis": ("stay_id", "SELECT e.outtime - INTERVAL 1 MINUTE, x.icd_title FROM diagnosis x JOIN edstays e "
                             "USING (stay_id) WHERE x.stay_id = ?"),
    "diagnosis_ccs": ("stay_id", "SELECT e.outtime - INTERVAL 1 MINUTE, trim(x.icd_code) FROM diagnosis x "
                                 "JOIN edstays e USING (stay_id) WHERE x.stay_id = ? AND x.icd_version = 10"),
    "medrecon": ("stay_id", "SELECT charttime, name FROM medrecon WHERE stay_id = ?"),
    "pyxis": ("stay_id", "SELECT charttime, name FROM pyxis WHERE stay_id = ?"),
}


def decision_label(con, r: dict) -> list[str]:
    """The items of the first event strictly after the cutoff (and only those rows)."""
    key, sql = EVENTS[r["task"]]
    cut = _t(r["prediction_time"])
    events = [(t if isinstance(t, datetime) else datetime.combine(t, datetime.min.time()), v)
              for t, v in con.execute(sql, [r[key]]).fetchall() if t is not None and v is not None]
    after = [t for t, _ in events if t > cut]
    assert after, r["qid"]
    first = min(after)
    assert first - cut <= timedelta(seconds=1), r["qid"]  # the event right after the prediction time
    items = {v for t, v in events if t == first}
    if r["task"].endswith("_ccs"):
        return ccsr_label(items)
    return sorted(items)


def check_labels(con, rows: dict[str, list[dict]]) -> int:
    n = 0
    for task, task_rows in rows.items():
        for r in task_rows:
            got = [risk_label(con, r)] if task in RISK else decision_label(con, r)
            assert r["label"] == got, (r["qid"], r["label"], got)
            n += 1
    return n


# ---------------------------------------------------------------------------------------------------- demo
def test_every_reference_family_builds_rows_with_the_reference_fields(demo):
    _, rows, _ = demo
    assert set(rows) == set(REFERENCE_TASKS)
    assert {"ED_Hospitalization", "ED_Critical_Outcomes", "ED_ICU_Tranfer_12hour", "Readmission_30day",
            "LengthOfStay_7day", "ICU_Mortality_7day", "ICU_Readmission", "labevents", "pyxis",
            "diagnoses_ccs"} <= set(rows)
    assert not set(NOT_BUILT) & set(REFERENCE_TASKS)
    for task, task_rows in rows.items():
        if task in MIMIC_ONLY:
            assert task_rows == [], task  # the synthetic cohort has no such table
            continue
        assert task_rows, task
        for r in task_rows:
            t = Task.model_validate(r)
            assert t.task == task and t.question and t.label and set(t.label) <= set(t.candidates), r["qid"]
            assert r["qid"].startswith(f"{task}_{r['subject_id']}_"), r["qid"]
            assert r["task_type"] == ("risk_prediction" if task in RISK else "decision_making")
            if task.startswith(("ED_", "ICU_")) or (task in DECISIONS and DECISIONS[task].key == "stay"):
                assert r["stay_id"], r["qid"]
            if r["hadm_id"] is None:
                assert task.startswith("ED_") or task in ("omr", "diagnosis", "diagnosis_ccs", "medrecon", "pyxis")
        assert len({r["qid"] for r in task_rows}) == len(task_rows), task
    for task in ("ED_Hospitalization", "ED_Reattendance_3day", "ED_Critical_Outcomes", "Readmission_30day",
                 "LengthOfStay_3day", "Inpatient_Mortality", "ICU_Mortality_7day"):
        assert {r["label"][0] for r in rows[task]} == {"yes", "no"}, task


def test_every_label_is_recomputed_from_rows_after_the_prediction_time(demo):
    _, rows, con = demo
    assert check_labels(con, rows) > 1000


def test_prediction_times_fall_where_the_reference_asks(demo):
    _, rows, con = demo
    ed = {s: (i, o) for s, i, o in con.execute("SELECT stay_id, intime, outtime FROM edstays").fetchall()}
    icu = {s: i for s, i in con.execute("SELECT stay_id, intime FROM icustays").fetchall()}
    adm = {h: (a, d) for h, a, d in con.execute("SELECT hadm_id, admittime, dischtime FROM admissions").fetchall()}
    for r in rows["ED_Hospitalization"]:
        cut, (i, o) = _t(r["prediction_time"]), ed[r["stay_id"]]
        assert i < cut <= i + timedelta(hours=1) and cut < o
        if r["hadm_id"]:
            assert cut < adm[r["hadm_id"]][0]  # asked before the admission is on record
    for r in rows["ED_Reattendance_3day"]:
        assert _t(r["prediction_time"]) == ed[r["stay_id"]][1] - timedelta(minutes=1)
    for r in rows["ICU_Mortality_1day"]:
        assert _t(r["prediction_time"]) == icu[r["stay_id"]] + timedelta(hours=24)
    for r in rows["LengthOfStay_3day"]:
        assert _t(r["prediction_time"]) == adm[r["hadm_id"]][0] + timedelta(hours=24)
    for r in rows["Readmission_30day"]:
        assert _t(r["prediction_time"]) == adm[r["hadm_id"]][1]


def _decoy(tmp_path, db, rows) -> tuple:
    """A copy of the database with rows placed just before sampled cutoffs, each one that would flip the label
    (or add a label item) if the builder read rows before the cutoff."""
    copy = tmp_path / "decoy.duckdb"
    shutil.copy(db, copy)
    con = duckdb.connect(str(copy))
    con.execute("INSERT INTO d_labitems VALUES (99999, 'Decoy test', 'Blood', 'Chemistry')")
    touched = defaultdict(list)
    next_stay = 39_000_000
    for r in rows["ED_Reattendance_3day"]:
        if r["label"] == ["no"] and len(touched["ED_Reattendance_3day"]) < 15:
            cut = _t(r["prediction_time"])
            next_stay += 1
            con.execute("INSERT INTO edstays (subject_id, stay_id, intime, outtime, disposition) VALUES (?, ?, ?, ?, "
                        "'HOME')", [r["subject_id"], next_stay, cut - timedelta(minutes=10),
                                    cut - timedelta(minutes=5)])
            touched["ED_Reattendance_3day"].append(r["qid"])
    for task in ("ED_ICU_Tranfer_12hour", "ICU_Readmission"):
        for r in rows[task]:
            if r["label"] == ["no"] and r["hadm_id"] and len(touched[task]) < 15:
                cut = _t(r["prediction_time"])
                next_stay += 1
                con.execute("INSERT INTO icustays (subject_id, hadm_id, stay_id, intime, outtime) VALUES "
                            "(?, ?, ?, ?, ?)", [r["subject_id"], r["hadm_id"], next_stay,
                                                cut - timedelta(minutes=30), cut - timedelta(minutes=10)])
                touched[task].append(r["qid"])
    for r in rows["labevents"][:20]:
        con.execute("INSERT INTO labevents (subject_id, hadm_id, itemid, charttime, valuenum) VALUES (?, ?, 99999, ?, "
                    "1)", [r["subject_id"], r["hadm_id"], _t(r["prediction_time"]) - timedelta(seconds=30)])
        touched["labevents"].append(r["qid"])
    for r in rows["pyxis"][:20]:
        con.execute("INSERT INTO pyxis (subject_id, stay_id, charttime, name) VALUES (?, ?, ?, 'Decoy drug')",
                    [r["subject_id"], r["stay_id"], _t(r["prediction_time"]) - timedelta(seconds=30)])
        touched["pyxis"].append(r["qid"])
    con.close()
    return copy, touched


def test_rows_before_the_cutoff_do_not_change_a_label(demo, tmp_path):
    db, rows, _ = demo
    copy, touched = _decoy(tmp_path, db, rows)
    again = reference_rows(copy, list(touched), ALL, 5)
    con = duckdb.connect(str(copy), read_only=True)
    try:
        check_labels(con, again)  # still the rows after each cutoff, decoys included where they come after
    finally:
        con.close()
    for task, qids in touched.items():
        assert qids, task
        before = {r["qid"]: r["label"] for r in rows[task]}
        after = {r["qid"]: r["label"] for r in again[task]}
        kept = [q for q in qids if q in after]
        assert kept, task
        for q in kept:
            assert after[q] == before[q], (task, q)
            assert "Decoy test" not in after[q] and "Decoy drug" not in after[q]


def test_cli_families_reference_and_unknown_names(demo, tmp_path, capsys):
    from clinseek.cli import cli, main

    db, _, _ = demo
    out = tmp_path / "ref.jsonl"
    res = CliRunner().invoke(cli, ["data", "tasks", str(db), "--out", str(out), "--families", "reference",
                                   "--only", "ED_Hospitalization", "--task", "pyxis", "--per-task", "6",
                                   "--no-input"])
    assert res.exit_code == 0, res.output
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["task"] for r in got] == ["ED_Hospitalization", "pyxis"] * 6
    assert sum(r["label"] == ["yes"] for r in got if r["task"] == "ED_Hospitalization") == 3  # balanced
    for args, why in ((["--families", "reference", "--task", "medrecon_atc"], "ATC mapping"),
                      (["--task", "pyxis"], "unknown task")):  # the default families do not know reference names
        with pytest.raises(SystemExit) as info:
            main(["data", "tasks", str(db), "--out", str(out), *args])
        assert info.value.code == 2 and why in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------- MIMIC-IV
def _csv(path, header: str, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write("\n".join([header, *lines]) + "\n")


@pytest.fixture(scope="module")
def mimic(tmp_path_factory):
    """Two patients written as MIMIC-IV 3.1 csv.gz (hosp/, icu/, ed/), imported by `import-mimic-iv`.

    10000001: an ED visit sent home, back 44 h later and admitted; ICU 4 h after leaving the ED, a second ICU
    stay later in the admission; readmitted 20 days after discharge and dies in that admission.
    10000002: elective admission, ICU, dies 42 h after the ICU's first day."""
    src = tmp_path_factory.mktemp("mimic")
    _csv(src / "hosp/patients.csv.gz", "subject_id,gender,anchor_age,anchor_year,anchor_year_group,dod",
         ["10000001,F,60,2150,2011 - 2013,2150-02-03", "10000002,M,70,2160,2014 - 2016,2160-05-04"])
    _csv(src / "hosp/admissions.csv.gz", "subject_id,hadm_id,admittime,dischtime,deathtime,admission_type,"
         "edregtime,edouttime,hospital_expire_flag",
         ["10000001,20000021,2150-01-03 15:00:00,2150-01-12 10:00:00,,EW EMER.,2150-01-03 10:00:00,"
          "2150-01-03 16:00:00,0",
          "10000001,20000022,2150-02-01 09:00:00,2150-02-03 12:00:00,2150-02-03 12:00:00,URGENT,,,1",
          "10000002,20000023,2160-05-01 08:00:00,2160-05-04 06:00:00,2160-05-04 06:00:00,ELECTIVE,,,1"])
    _csv(src / "hosp/d_labitems.csv.gz", "itemid,label,fluid,category",
         ["50912,Creatinine,Blood,Chemistry", "50971,Potassium,Blood,Chemistry", "51222,Hemoglobin,Blood,Hematology"])
    _csv(src / "hosp/labevents.csv.gz", "labevent_id,subject_id,hadm_id,itemid,charttime,valuenum",
         ["1,10000002,20000023,50912,2160-05-02 06:00:00,1.1", "2,10000002,20000023,50971,2160-05-02 06:00:00,4.2",
          "3,10000002,20000023,51222,2160-05-02 14:00:00,9.5"])
    _csv(src / "icu/icustays.csv.gz", "subject_id,hadm_id,stay_id,first_careunit,last_careunit,intime,outtime,los",
         ["10000001,20000021,30000041,MICU,MICU,2150-01-03 20:00:00,2150-01-06 20:00:00,3.0",
          "10000001,20000021,30000042,MICU,MICU,2150-01-08 10:00:00,2150-01-09 12:00:00,1.08",
          "10000002,20000023,30000043,SICU,SICU,2160-05-01 12:00:00,2160-05-04 06:00:00,2.75"])
    _csv(src / "ed/edstays.csv.gz", "subject_id,hadm_id,stay_id,intime,outtime,gender,race,arrival_transport,"
         "disposition",
         ["10000001,,30000031,2150-01-01 08:00:00,2150-01-01 14:00:00,F,WHITE,WALK IN,HOME",
          "10000001,20000021,30000032,2150-01-03 10:00:00,2150-01-03 16:00:00,F,WHITE,AMBULANCE,ADMITTED"])
    _csv(src / "ed/triage.csv.gz", "subject_id,stay_id,heartrate,acuity,chiefcomplaint",
         ["10000001,30000031,88,3,Abd pain", "10000001,30000032,118,2,Abd pain"])
    _csv(src / "ed/vitalsign.csv.gz", "subject_id,stay_id,charttime,heartrate",
         ["10000001,30000031,2150-01-01 08:30:00,90", "10000001,30000032,2150-01-03 10:20:00,121"])
    _csv(src / "ed/pyxis.csv.gz", "subject_id,stay_id,charttime,med_rn,name,gsn_rn,gsn",
         ["10000001,30000031,2150-01-01 09:00:00,1,Ondansetron,1,1", "10000001,30000031,2150-01-01 10:30:00,2,"
          "Morphine Sulfate,1,2", "10000001,30000031,2150-01-01 10:30:00,3,Ketorolac,1,3"])
    _csv(src / "ed/diagnosis.csv.gz", "subject_id,stay_id,seq_num,icd_code,icd_version,icd_title",
         ["10000001,30000031,1,R1084,10,GENERALIZED ABDOMINAL PAIN", "10000001,30000032,1,K8000,10,CALCULUS OF GB"])
    out = src / "mimic.duckdb"
    import_mimic_iv(src, out)
    rows = reference_rows(out, REFERENCE_TASKS, ALL, 1)
    con = duckdb.connect(str(out), read_only=True)
    yield rows, con
    con.close()


def _label(rows, qid):
    return next(r["label"] for task_rows in rows.values() for r in task_rows if r["qid"] == qid)


def test_mimic_import_labels_follow_the_reference_definitions(mimic):
    rows, con = mimic
    assert check_labels(con, {t: r for t, r in rows.items() if t in RISK or t in EVENTS}) > 20
    home, admitted = "10000001_na_30000031", "10000001_20000021_30000032"
    assert _label(rows, f"ED_Hospitalization_{home}") == ["no"]
    assert _label(rows, f"ED_Reattendance_3day_{home}") == ["yes"]  # back 44 h later
    assert _label(rows, f"ED_Hospitalization_{admitted}") == ["yes"]
    assert _label(rows, f"ED_ICU_Tranfer_12hour_{admitted}") == ["yes"]
    assert _label(rows, f"ED_Critical_Outcomes_{admitted}") == ["yes"]
    assert _label(rows, f"ED_Inpatient_Mortality_{admitted}") == ["no"]
    assert _label(rows, f"ED_Reattendance_3day_{admitted}") == ["no"]
    assert _label(rows, "Readmission_30day_10000001_20000021") == ["yes"]  # 20 days later
    assert _label(rows, "LengthOfStay_7day_10000001_20000021") == ["yes"]
    assert _label(rows, "Inpatient_Mortality_10000001_20000022") == ["yes"]
    assert _label(rows, "LengthOfStay_3day_10000001_20000022") == ["no"]
    assert _label(rows, "ICU_Readmission_10000001_20000021_30000041") == ["yes"]
    assert _label(rows, "ICU_Stay_7day_10000001_20000021_30000041") == ["no"]
    assert _label(rows, "ICU_Mortality_14day_10000001_20000021_30000041") == ["no"]  # dies 28 days later
    assert _label(rows, "ICU_Mortality_1day_10000002_20000023_30000043") == ["no"]  # dies 42 h after intime+24h
    assert _label(rows, "ICU_Mortality_2day_10000002_20000023_30000043") == ["yes"]
    assert not any(r["hadm_id"] == 20000022 for r in rows["Readmission_30day"])  # died in hospital
    labs = rows["labevents"]
    assert [r["label"] for r in labs] in (
        [["Creatinine", "Potassium"]], [["Hemoglobin"]])  # one event of the admission, all its items
    assert [r["label"] for r in rows["pyxis"]] in ([["Ondansetron"]], [["Ketorolac", "Morphine Sulfate"]])
    assert rows["diagnosis"] and {r["label"][0] for r in rows["diagnosis"]} <= {"GENERALIZED ABDOMINAL PAIN",
                                                                               "CALCULUS OF GB"}
