"""The synthetic ED module: ED-only visits and diagnosis/medrecon/pyxis come from their own random streams, so the
tables the cohort had before keep every row for the same seed; and the ehr tools show none of them early."""
from __future__ import annotations

import hashlib
from datetime import timedelta

import duckdb
import pytest

from clinseek_demo.build import build_cohort
from clinseek_demo.ed_records import ED_ONLY_STAY_BASE

# sha256 (first 16 hex) of every row of each table, built with patients=60, seed=3 by the generator before the ED
# module (GENERATOR_VERSION 3); the ED tables are compared on their admitted visits, the rows they had then.
BEFORE = {
    "_latent": "d1eb332d1494d792", "admissions": "0bfbaed30e8bad9c", "chartevents": "99bcbed02f5f7e9c",
    "cxr_labels": "315f34bbc2649420", "cxr_metadata": "29ae5486f49eab5f", "d_icd_diagnoses": "d924bc6c2f33e1e2",
    "d_icd_procedures": "82565a6b3c2ef41a", "d_items": "c1252e3af645c0cd", "d_labitems": "22d6c8f5a924188f",
    "diagnoses_icd": "439a5a44425386bf", "discharge": "5f4c11b1aa17096e", "edstays": "ccc3643fb9c25f21",
    "icustays": "17963654a452ce21", "inputevents": "43aaf3aabded801d", "labevents": "4c66883566e67e52",
    "microbiologyevents": "9730d7362215559b", "omr": "89e7aab521b31d52", "outputevents": "886ae128869c4b53",
    "patients": "f3dae9c287301161", "prescriptions": "96260e6d655b5553", "procedures_icd": "b1e10126e0747558",
    "radiology": "701528e707bab548", "services": "3cfe2548c74c3672", "transfers": "72de80ea35cf1dc8",
    "triage": "29b4be571c2a570c", "vitalsign": "434ff7f12f915b94",
}
ADMITTED_ONLY = {"edstays": "WHERE hadm_id IS NOT NULL", "triage": f"WHERE stay_id < {ED_ONLY_STAY_BASE}",
                 "vitalsign": f"WHERE stay_id < {ED_ONLY_STAY_BASE}"}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("ed")
    build_cohort(out, patients=60, seed=3, images=False)
    con = duckdb.connect(str(out / "cohort.duckdb"), read_only=True)
    yield out / "cohort.duckdb", con
    con.close()


def test_tables_that_existed_keep_every_row_for_the_same_seed(cohort):
    _, con = cohort
    for table, digest in BEFORE.items():
        h = hashlib.sha256()
        for row in con.execute(f'SELECT * FROM "{table}" {ADMITTED_ONLY.get(table, "")}').fetchall():
            h.update(repr(row).encode())
        assert h.hexdigest()[:16] == digest, table


def test_ed_only_visits_stay_clear_of_admissions_and_death(cohort):
    _, con = cohort
    n, admitted = con.execute("SELECT count(*), count(hadm_id) FROM edstays").fetchone()
    assert 0 < admitted < n
    assert con.execute("SELECT count(*) FROM edstays WHERE hadm_id IS NULL AND (disposition = 'ADMITTED' "
                       f"OR stay_id < {ED_ONLY_STAY_BASE})").fetchone()[0] == 0
    # the evidence window of every clinseek task (>= admittime - 36 h) never sees an ED-only visit
    assert con.execute("""SELECT count(*) FROM edstays e JOIN admissions a USING (subject_id)
        WHERE e.hadm_id IS NULL AND e.outtime >= a.admittime - INTERVAL 48 HOUR
          AND e.intime <= a.dischtime""").fetchone()[0] == 0
    assert con.execute("""SELECT count(*) FROM edstays e JOIN patients p USING (subject_id)
        WHERE e.hadm_id IS NULL AND e.outtime >= CAST(p.dod AS TIMESTAMP)""").fetchone()[0] == 0
    assert con.execute("SELECT count(*) = count(DISTINCT stay_id) FROM edstays").fetchone()[0]
    # one patient's visits never overlap; some come back within 72 h
    assert con.execute("""SELECT count(*) FROM edstays a JOIN edstays b ON a.subject_id = b.subject_id
        AND a.stay_id < b.stay_id AND a.intime < b.outtime AND b.intime < a.outtime""").fetchone()[0] == 0


def test_ed_detail_rows_fall_inside_their_visit(cohort):
    _, con = cohort
    for table in ("medrecon", "pyxis", "vitalsign"):
        total, inside = con.execute(f"""SELECT count(*), count(*) FILTER (WHERE x.charttime >= e.intime
            AND x.charttime <= e.outtime) FROM {table} x JOIN edstays e USING (stay_id)""").fetchone()
        assert total > 0 and inside == total, table
    assert con.execute("SELECT count(DISTINCT stay_id) FROM diagnosis").fetchone()[0] == \
        con.execute("SELECT count(*) FROM edstays").fetchone()[0]
    assert con.execute("SELECT count(*) FROM triage").fetchone()[0] == \
        con.execute("SELECT count(*) FROM edstays").fetchone()[0]


def test_leak_audit_finds_nothing_in_the_ed_tables(cohort):
    from clinseek.tasks import Task
    from clinseek_demo.reference_families import reference_rows
    from clinseek_ehr.audit import audit_tasks
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    db, _ = cohort
    families = ["ED_Hospitalization", "ED_Reattendance_3day", "diagnosis", "medrecon", "pyxis", "LengthOfStay_3day"]
    rows = [r for rs in reference_rows(db, families, 10_000, 3).values() for r in rs][::3]
    toolset = EhrToolset(EhrConfig(database=str(db)), None)
    toolset.open()
    try:
        report = audit_tasks(toolset, [Task.model_validate(r) for r in rows], workers=2)
    finally:
        toolset.close()
    assert report.tasks == len(rows) > 50
    for table in ("edstays", "triage", "vitalsign", "diagnosis", "medrecon", "pyxis"):
        counts = report.tables[table]
        assert counts.rows > 0 and counts.violations == 0, (table, vars(counts))
    assert sum(c.violations for c in report.tables.values()) == 0


def test_the_ed_outcome_columns_read_null_while_the_patient_is_in_the_ed(cohort):
    from clinseek.toolsets import Binding, Episode
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    db, con = cohort
    subject, stay, intime, outtime = con.execute(
        "SELECT subject_id, stay_id, intime, outtime FROM edstays WHERE hadm_id IS NULL LIMIT 1").fetchone()
    toolset = EhrToolset(EhrConfig(database=str(db)), None)
    toolset.open()
    try:
        def sql(cutoff, query):
            ep = Episode(binding=Binding(qid="q", subject_id=subject, hadm_id=None, prediction_time=cutoff), task=None)
            return toolset.run_sql(ep, query).rows

        def seen(cutoff):
            return {r[0]: tuple(r[1:]) for r in sql(cutoff, f"SELECT stay_id, outtime, disposition FROM edstays "
                                                            f"WHERE stay_id = {stay}")}

        assert seen(intime + timedelta(minutes=30))[stay] == (None, None)
        assert seen(outtime)[stay][1] is not None
        # the ED diagnosis shows only once the visit is over
        def dx(cutoff):
            return sql(cutoff, f"SELECT count(*) FROM diagnosis WHERE stay_id = {stay}")[0][0]

        assert dx(outtime - timedelta(minutes=1)) == 0 and dx(outtime) > 0
    finally:
        toolset.close()
