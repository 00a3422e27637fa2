"""The synthetic cohort: MIMIC-IV schema conformance, sort order, determinism, and the latent model's plausibility."""
from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
import yaml

from clinseek_demo import schema
from clinseek_demo.build import build_cohort
from clinseek_demo.catalog import SCHEMA_FILE

REFERENCE = Path("/work/shared/reference/mimic_iv_schema.yaml")
PATIENTS = 80


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    build_cohort(out, patients=PATIENTS, seed=11, images=False)
    con = duckdb.connect(str(out / "cohort.duckdb"), read_only=True)
    yield con
    con.close()


def _columns(con, table):
    return [(r[0], r[1]) for r in con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? ORDER BY ordinal_position",
        [table]).fetchall()]


def _content_hash(db: Path) -> dict[str, str]:
    """md5 of every row, in stored order (the sort order is part of what must be reproducible)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f'SELECT md5(string_agg(CAST(x AS VARCHAR), chr(10) ORDER BY rowid)) FROM "{t}" x'
                               ).fetchone()[0] for t in schema.all_tables()}
    finally:
        con.close()


def test_shipped_schema_copy_matches_reference():
    if not REFERENCE.exists():
        pytest.skip("the project reference schema is not on this machine; the shipped copy is checked below")
    ref = yaml.safe_load(REFERENCE.read_text())
    ours = yaml.safe_load(SCHEMA_FILE.read_text())
    for table, spec in ours["tables"].items():
        if table == "cxr_metadata":
            expected = [[c["name"], c["type"]] for c in ref["mimic_cxr"]["metadata_file"]["columns"]]
        else:
            expected = [[c["name"], c["type"]] for c in ref["mimic_iv"]["tables"][table]["columns"]]
        assert spec["columns"] == expected, table
    for kind in ("labevents", "chartevents"):
        ref_items = {x["itemid"]: (x["label"], x.get("unit")) for x in ref["items"][kind]}
        for x in ours["items"][kind]:
            assert ref_items[x["itemid"]] == (x["label"], x.get("unit"))


def test_every_mimic_table_has_mimic_columns_in_order_with_types(cohort):
    ours = yaml.safe_load(SCHEMA_FILE.read_text())["tables"]
    for table in schema.MIMIC_TABLES + schema.DICTIONARY_TABLES + schema.CXR_TABLES:
        got = _columns(cohort, table)
        expected = [(n, schema.duckdb_type(t)) for n, t in ours[table]["columns"]]
        assert got[:len(expected)] == expected, table
        if table == "cxr_metadata":
            assert got[len(expected):] == [("study_datetime", "TIMESTAMP"), ("path", "VARCHAR")]
        else:
            assert len(got) == len(expected), table


def test_required_tables_are_populated(cohort):
    for table in ("patients", "admissions", "transfers", "icustays", "labevents", "d_labitems", "chartevents",
                  "d_items", "microbiologyevents", "prescriptions", "diagnoses_icd", "d_icd_diagnoses",
                  "procedures_icd", "d_icd_procedures", "discharge", "radiology", "cxr_metadata", "cxr_labels",
                  "_latent", "edstays", "triage", "vitalsign", "omr", "inputevents", "outputevents", "services"):
        assert cohort.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0] > 0, table
    assert cohort.execute("SELECT count(DISTINCT subject_id) FROM patients").fetchone()[0] == PATIENTS


@pytest.mark.parametrize("table,time_col", [
    ("labevents", "charttime"), ("chartevents", "charttime"), ("microbiologyevents", "charttime"),
    ("prescriptions", "starttime"), ("transfers", "intime"), ("admissions", "admittime"), ("radiology", "charttime"),
    ("discharge", "charttime"), ("outputevents", "charttime"), ("inputevents", "starttime"),
    ("vitalsign", "charttime"), ("cxr_metadata", "study_datetime")])
def test_event_tables_are_stored_sorted_by_subject_and_time(cohort, table, time_col):
    bad = cohort.execute(f"""
        SELECT count(*) FROM (
          SELECT subject_id, {time_col} AS t,
                 lag(subject_id) OVER () AS ps, lag({time_col}) OVER () AS pt FROM "{table}")
        WHERE ps > subject_id OR (ps = subject_id AND pt > t)""").fetchone()[0]
    assert bad == 0


def test_ids_and_codes_look_like_mimic(cohort):
    assert cohort.execute("SELECT bool_and(subject_id BETWEEN 10000000 AND 19999999) FROM patients").fetchone()[0]
    assert cohort.execute("SELECT bool_and(hadm_id BETWEEN 20000000 AND 29999999) FROM admissions").fetchone()[0]
    assert cohort.execute("SELECT bool_and(stay_id BETWEEN 30000000 AND 39999999) FROM icustays").fetchone()[0]
    # each ICU stay is one of the admission's transfers
    orphan = cohort.execute("SELECT count(*) FROM icustays i LEFT JOIN transfers t ON t.transfer_id = i.stay_id "
                            "WHERE t.transfer_id IS NULL").fetchone()[0]
    assert orphan == 0
    # every billed code has a real ICD-10 title
    untitled = cohort.execute("SELECT count(*) FROM diagnoses_icd d LEFT JOIN d_icd_diagnoses t USING "
                              "(icd_code, icd_version) WHERE t.long_title IS NULL").fetchone()[0]
    assert untitled == 0
    untitled = cohort.execute("SELECT count(*) FROM procedures_icd d LEFT JOIN d_icd_procedures t USING "
                              "(icd_code, icd_version) WHERE t.long_title IS NULL").fetchone()[0]
    assert untitled == 0
    assert cohort.execute("SELECT long_title FROM d_icd_diagnoses WHERE icd_code = 'A419' AND icd_version = 10"
                          ).fetchone()[0] == "Sepsis, unspecified organism"
    # lab values carry MIMIC's units
    assert cohort.execute("SELECT DISTINCT valueuom FROM labevents WHERE itemid = 50813").fetchall() == [("mmol/L",)]
    assert cohort.execute("SELECT DISTINCT label FROM d_labitems WHERE itemid = 50912").fetchall() == [("Creatinine",)]
    # the note id format is subject-type-seq
    assert cohort.execute("SELECT bool_and(note_id = subject_id || '-RR-' || note_seq) FROM radiology").fetchone()[0]


@pytest.mark.parametrize("table,id_col,time_col", [
    ("labevents", "specimen_id", "charttime"), ("labevents", "labevent_id", "charttime"),
    ("prescriptions", "pharmacy_id", "starttime"), ("prescriptions", "poe_seq", "starttime"),
    ("microbiologyevents", "micro_specimen_id", "charttime"), ("microbiologyevents", "microevent_id", "charttime")])
def test_row_ids_follow_time_so_gaps_never_hint_at_later_rows(cohort, table, id_col, time_col):
    bad = cohort.execute(f"""
        SELECT count(*) FROM (SELECT subject_id, {id_col} AS i, {time_col} AS t,
               lag({id_col}) OVER (PARTITION BY subject_id ORDER BY {time_col}, {id_col}) AS pi FROM "{table}")
        WHERE pi > i""").fetchone()[0]
    assert bad == 0
    # consecutive: the visible ids of a patient are exactly 1..k of their range
    gaps = cohort.execute(f"""
        SELECT count(*) FROM (SELECT subject_id, max({id_col}) - min({id_col}) + 1 AS span,
               count(DISTINCT {id_col}) AS n FROM "{table}" GROUP BY subject_id) WHERE span <> n""").fetchone()[0]
    assert gaps == 0


def test_times_are_consistent_within_admissions(cohort):
    a = cohort.execute("""
        SELECT count(*) FILTER (WHERE dischtime <= admittime),
               count(*) FILTER (WHERE deathtime IS NOT NULL AND deathtime <> dischtime),
               count(*) FILTER (WHERE (deathtime IS NOT NULL) <> (hospital_expire_flag = 1))
        FROM admissions""").fetchone()
    assert a == (0, 0, 0)
    outside = cohort.execute("""
        SELECT count(*) FROM icustays i JOIN admissions a USING (hadm_id)
        WHERE i.intime < a.admittime OR i.outtime > a.dischtime""").fetchone()[0]
    assert outside == 0
    late_labs = cohort.execute("""
        SELECT count(*) FROM labevents l JOIN admissions a USING (hadm_id)
        WHERE l.charttime > a.dischtime OR l.storetime < l.charttime""").fetchone()[0]
    assert late_labs == 0
    # nobody is admitted after death
    after = cohort.execute("""
        SELECT count(*) FROM admissions a JOIN patients p USING (subject_id)
        WHERE p.dod IS NOT NULL AND a.admittime::DATE > p.dod""").fetchone()[0]
    assert after == 0


def test_conditions_drive_the_evidence(cohort):
    """Sepsis raises lactate; heart failure raises NT-proBNP; pneumonia drives consolidation on CXR."""
    lact = dict(cohort.execute("""
        SELECT l.conditions LIKE '%sepsis%', median(e.valuenum) FROM _latent l
        JOIN labevents e USING (hadm_id) WHERE e.itemid = 50813 GROUP BY 1""").fetchall())
    assert lact[True] > lact[False] * 1.3
    bnp = dict(cohort.execute("""
        SELECT l.conditions LIKE '%heart_failure%', median(e.valuenum) FROM _latent l
        JOIN labevents e USING (hadm_id) WHERE e.itemid = 50963 GROUP BY 1""").fetchall())
    assert bnp[True] > bnp[False] * 2
    cons = dict(cohort.execute("""
        SELECT l.conditions LIKE '%pneumonia%', avg(c.present::INT) FROM cxr_labels c
        JOIN cxr_metadata m USING (dicom_id)
        JOIN admissions a ON a.subject_id = m.subject_id
             AND m.study_datetime BETWEEN a.admittime - INTERVAL 12 HOUR AND a.dischtime
        JOIN _latent l ON l.hadm_id = a.hadm_id
        WHERE c.label = 'consolidation' GROUP BY 1""").fetchall())
    assert cons[True] > cons[False] + 0.3


def test_latent_outcomes_match_the_tables(cohort):
    mismatch = cohort.execute("""
        SELECT count(*) FROM _latent l JOIN admissions a USING (hadm_id)
        WHERE l.dies <> (a.hospital_expire_flag = 1)
           OR l.icu <> EXISTS (SELECT 1 FROM icustays i WHERE i.hadm_id = a.hadm_id)""").fetchone()[0]
    assert mismatch == 0


def test_generation_is_a_function_of_the_seed():
    import pandas as pd

    from clinseek_demo.build import generate_block

    a, b, c = generate_block(5, 0, 0, 25), generate_block(5, 0, 0, 25), generate_block(6, 0, 0, 25)
    for table in ("admissions", "labevents", "chartevents", "radiology", "cxr_metadata", "diagnoses_icd"):
        pd.testing.assert_frame_equal(a[table], b[table])
    assert not a["labevents"]["valuenum"].equals(c["labevents"]["valuenum"])


@pytest.mark.slow
def test_same_seed_same_rows_other_seed_other_rows(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for out, seed in ((a, 5), (b, 5), (c, 6)):
        build_cohort(out, patients=40, seed=seed, images=False)
    ha, hb, hc = (_content_hash(x / "cohort.duckdb") for x in (a, b, c))
    assert ha == hb
    differing = [t for t in ha if ha[t] != hc[t]]
    assert "labevents" in differing and "admissions" in differing and "d_icd_diagnoses" not in differing


@pytest.mark.slow
def test_chunk_size_does_not_change_rows(tmp_path):
    # 260 patients = two blocks; chunk_patients=250 writes them in two chunks instead of one
    build_cohort(tmp_path / "one", patients=260, seed=5, images=False)
    build_cohort(tmp_path / "two", patients=260, seed=5, images=False, chunk_patients=250)
    assert _content_hash(tmp_path / "one" / "cohort.duckdb") == _content_hash(tmp_path / "two" / "cohort.duckdb")


def test_rejects_bad_patient_counts(tmp_path):
    from clinseek.errors import UserError

    with pytest.raises(UserError, match="--patients"):
        build_cohort(tmp_path, patients=0)
    with pytest.raises(UserError, match="--seed"):
        build_cohort(tmp_path, patients=3, seed=-1)


def test_cohort_entry_points_import_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys, clinseek_demo.cli, clinseek_demo.source, clinseek_demo.demo; "
            "print(','.join(m for m in ('numpy', 'pandas', 'duckdb', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
