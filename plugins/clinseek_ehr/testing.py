"""A tiny MIMIC-IV-shaped DuckDB with known leaks waiting to happen, for tests of the ehr toolset and of profiles.

Patient 10000001 is the one tests bind, with the cutoff CUTOFF. Every table holds rows before and after the cutoff
and rows of other patients; every future value and every other-patient value carries a marker (a 'FUTURE' or
'OTHER' string, or a time after the cutoff), so a leak shows up in any query's output.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

PATIENT = 10000001
OTHER = 10000002
CUTOFF = datetime(2180, 5, 6, 12, 0)

_DDL = """
CREATE TABLE patients (subject_id INTEGER, gender VARCHAR, anchor_age SMALLINT, anchor_year SMALLINT,
  anchor_year_group VARCHAR, dod DATE);
CREATE TABLE admissions (subject_id INTEGER, hadm_id INTEGER, admittime TIMESTAMP, dischtime TIMESTAMP,
  deathtime TIMESTAMP, admission_type VARCHAR, admit_provider_id VARCHAR, admission_location VARCHAR,
  discharge_location VARCHAR, insurance VARCHAR, language VARCHAR, marital_status VARCHAR, race VARCHAR,
  edregtime TIMESTAMP, edouttime TIMESTAMP, hospital_expire_flag SMALLINT);
CREATE TABLE transfers (subject_id INTEGER, hadm_id INTEGER, transfer_id INTEGER, eventtype VARCHAR,
  careunit VARCHAR, intime TIMESTAMP, outtime TIMESTAMP);
CREATE TABLE icustays (subject_id INTEGER, hadm_id INTEGER, stay_id INTEGER, first_careunit VARCHAR,
  last_careunit VARCHAR, intime TIMESTAMP, outtime TIMESTAMP, los DOUBLE);
CREATE TABLE labevents (labevent_id INTEGER, subject_id INTEGER, hadm_id INTEGER, specimen_id INTEGER,
  itemid INTEGER, order_provider_id VARCHAR, charttime TIMESTAMP, storetime TIMESTAMP, value VARCHAR,
  valuenum DOUBLE, valueuom VARCHAR, ref_range_lower DOUBLE, ref_range_upper DOUBLE, flag VARCHAR,
  priority VARCHAR, comments VARCHAR);
CREATE TABLE d_labitems (itemid INTEGER, label VARCHAR, fluid VARCHAR, category VARCHAR);
CREATE TABLE chartevents (subject_id INTEGER, hadm_id INTEGER, stay_id INTEGER, caregiver_id INTEGER,
  charttime TIMESTAMP, storetime TIMESTAMP, itemid INTEGER, value VARCHAR, valuenum DOUBLE, valueuom VARCHAR,
  warning SMALLINT);
CREATE TABLE d_items (itemid INTEGER, label VARCHAR, abbreviation VARCHAR, linksto VARCHAR, category VARCHAR,
  unitname VARCHAR, param_type VARCHAR, lownormalvalue DOUBLE, highnormalvalue DOUBLE);
CREATE TABLE microbiologyevents (microevent_id INTEGER, subject_id INTEGER, hadm_id INTEGER,
  micro_specimen_id INTEGER, order_provider_id VARCHAR, chartdate TIMESTAMP, charttime TIMESTAMP,
  spec_itemid INTEGER, spec_type_desc VARCHAR, test_seq INTEGER, storedate TIMESTAMP, storetime TIMESTAMP,
  test_itemid INTEGER, test_name VARCHAR, org_itemid INTEGER, org_name VARCHAR, isolate_num SMALLINT,
  quantity VARCHAR, ab_itemid INTEGER, ab_name VARCHAR, dilution_text VARCHAR, dilution_comparison VARCHAR,
  dilution_value DOUBLE, interpretation VARCHAR, comments VARCHAR);
CREATE TABLE prescriptions (subject_id INTEGER, hadm_id INTEGER, pharmacy_id INTEGER, poe_id VARCHAR,
  poe_seq INTEGER, order_provider_id VARCHAR, starttime TIMESTAMP, stoptime TIMESTAMP, drug_type VARCHAR,
  drug VARCHAR, formulary_drug_cd VARCHAR, gsn VARCHAR, ndc VARCHAR, prod_strength VARCHAR, form_rx VARCHAR,
  dose_val_rx VARCHAR, dose_unit_rx VARCHAR, form_val_disp VARCHAR, form_unit_disp VARCHAR,
  doses_per_24_hrs REAL, route VARCHAR);
CREATE TABLE diagnoses_icd (subject_id INTEGER, hadm_id INTEGER, seq_num INTEGER, icd_code VARCHAR,
  icd_version SMALLINT);
CREATE TABLE d_icd_diagnoses (icd_code VARCHAR, icd_version SMALLINT, long_title VARCHAR);
CREATE TABLE procedures_icd (subject_id INTEGER, hadm_id INTEGER, seq_num INTEGER, chartdate DATE,
  icd_code VARCHAR, icd_version SMALLINT);
CREATE TABLE d_icd_procedures (icd_code VARCHAR, icd_version SMALLINT, long_title VARCHAR);
CREATE TABLE discharge (note_id VARCHAR, subject_id INTEGER, hadm_id INTEGER, note_type VARCHAR,
  note_seq SMALLINT, charttime TIMESTAMP, storetime TIMESTAMP, text VARCHAR);
CREATE TABLE radiology (note_id VARCHAR, subject_id INTEGER, hadm_id INTEGER, note_type VARCHAR,
  note_seq SMALLINT, charttime TIMESTAMP, storetime TIMESTAMP, text VARCHAR);
CREATE TABLE omr (subject_id INTEGER, chartdate DATE, seq_num INTEGER, result_name VARCHAR, result_value VARCHAR);
CREATE TABLE cxr_metadata (dicom_id VARCHAR, subject_id INTEGER, study_id INTEGER,
  PerformedProcedureStepDescription VARCHAR, ViewPosition VARCHAR, Rows INTEGER, Columns INTEGER,
  StudyDate INTEGER, StudyTime DOUBLE, ProcedureCodeSequence_CodeMeaning VARCHAR,
  ViewCodeSequence_CodeMeaning VARCHAR, PatientOrientationCodeSequence_CodeMeaning VARCHAR,
  study_datetime TIMESTAMP, path VARCHAR);
CREATE TABLE cxr_labels (subject_id INTEGER, study_id INTEGER, Pneumonia DOUBLE);
CREATE TABLE _secret (subject_id INTEGER, answer VARCHAR);
"""


def _rows(pid: int, tag: str, k: int) -> list[str]:
    """Insert statements for one patient. `tag` marks values: visible rows of the bound patient say 'PAST', rows that
    must never show say 'FUTURE' (or, for other patients, 'OTHER')."""
    f = "FUTURE" if tag == "PAST" else tag
    h = 20000000 + k * 10
    s = [
        f"INSERT INTO patients VALUES ({pid}, 'F', 60, 2180, '2014 - 2016', DATE '2180-09-01')",
        # prior admission (known), current (open at the cutoff), later admission (future)
        f"INSERT INTO admissions VALUES ({pid}, {h + 1}, '2179-01-01 10:00', '2179-01-05 12:00', NULL, 'URGENT', 'P1',"
        f" 'EMERGENCY ROOM', 'HOME', 'Medicare', 'ENGLISH', 'MARRIED', 'WHITE', NULL, NULL, 0)",
        f"INSERT INTO admissions VALUES ({pid}, {h + 2}, '2180-05-05 08:00', '2180-05-09 10:00', '2180-05-09 10:00',"
        f" 'EW EMER.', 'P1', 'EMERGENCY ROOM', 'DIED {f}', 'Medicare', 'ENGLISH', 'MARRIED', 'WHITE',"
        f" '2180-05-05 06:00', '2180-05-05 08:00', 1)",
        f"INSERT INTO admissions VALUES ({pid}, {h + 3}, '2180-08-01 08:00', '2180-08-03 10:00', NULL, 'ELECTIVE {f}',"
        f" 'P1', 'CLINIC', 'HOME {f}', 'Medicare', 'ENGLISH', 'MARRIED', 'WHITE', NULL, NULL, 0)",
        f"INSERT INTO transfers VALUES ({pid}, {h + 2}, {k}01, 'ED', 'Emergency Department', '2180-05-05 06:00', '2180-05-05 08:00')",
        f"INSERT INTO transfers VALUES ({pid}, {h + 2}, {k}02, 'admit', 'Medicine', '2180-05-05 08:00', '2180-05-05 20:00')",
        f"INSERT INTO transfers VALUES ({pid}, {h + 2}, {k}03, 'transfer', 'MICU', '2180-05-05 20:00', '2180-05-08 09:00')",
        f"INSERT INTO transfers VALUES ({pid}, {h + 2}, {k}04, 'discharge', 'DISCHARGE {f}', '2180-05-09 10:00', NULL)",
        f"INSERT INTO icustays VALUES ({pid}, {h + 2}, {k}03, 'MICU', 'CCU {f}', '2180-05-05 20:00', '2180-05-08 09:00', 2.5)",
        # labs: released before the cutoff / collected before but released after / at the cutoff / after
        f"INSERT INTO labevents VALUES ({k}001, {pid}, {h + 2}, 1, 50912, NULL, '2180-05-05 10:00', '2180-05-05 11:00',"
        f" '1.1 {tag}', 1.1, 'mg/dL', 0.5, 1.2, NULL, 'STAT', 'creatinine {tag}')",
        f"INSERT INTO labevents VALUES ({k}002, {pid}, {h + 2}, 2, 50912, NULL, '2180-05-06 11:00', '2180-05-06 13:00',"
        f" '9.9 {f}', 9.9, 'mg/dL', 0.5, 1.2, 'abnormal', 'STAT', 'pending {f}')",
        f"INSERT INTO labevents VALUES ({k}003, {pid}, {h + 2}, 3, 50971, NULL, '2180-05-06 12:00', '2180-05-06 12:00',"
        f" '4.0 {tag}', 4.0, 'mEq/L', 3.5, 5.1, NULL, 'ROUTINE', 'at cutoff {tag}')",
        f"INSERT INTO labevents VALUES ({k}004, {pid}, {h + 2}, 4, 50912, NULL, '2180-05-07 06:00', '2180-05-07 07:00',"
        f" '2.2 {f}', 2.2, 'mg/dL', 0.5, 1.2, 'abnormal', 'ROUTINE', 'later {f}')",
        f"INSERT INTO labevents VALUES ({k}005, {pid}, {h + 1}, 5, 50912, NULL, '2179-01-02 06:00', NULL,"
        f" '0.9 {tag}', 0.9, 'mg/dL', 0.5, 1.2, NULL, 'ROUTINE', 'old {tag}')",
        f"INSERT INTO chartevents VALUES ({pid}, {h + 2}, {k}03, 1, '2180-05-06 08:00', '2180-05-06 08:10', 220045,"
        f" '88 {tag}', 88, 'bpm', 0)",
        f"INSERT INTO chartevents VALUES ({pid}, {h + 2}, {k}03, 1, '2180-05-06 11:00', '2180-05-06 12:30', 220045,"
        f" '140 {f}', 140, 'bpm', 1)",
        f"INSERT INTO chartevents VALUES ({pid}, {h + 2}, {k}03, 1, '2180-05-06 14:00', '2180-05-06 14:05', 220045,"
        f" '150 {f}', 150, 'bpm', 1)",
        f"INSERT INTO microbiologyevents VALUES ({k}01, {pid}, {h + 2}, 1, NULL, '2180-05-05 00:00', '2180-05-05 12:00',"
        f" 70012, 'BLOOD CULTURE', 1, '2180-05-07 00:00', '2180-05-07 09:00', 90201, 'Blood Culture {tag}', 80004,"
        f" 'KLEBSIELLA {f}', 1, 'MANY {f}', 90015, 'CEFEPIME {f}', '<=1', '<=', 1, 'S', 'comment {f}')",
        f"INSERT INTO microbiologyevents VALUES ({k}02, {pid}, {h + 1}, 2, NULL, '2179-01-02 00:00', NULL,"
        f" 70079, 'URINE', 1, '2179-01-04 00:00', '2179-01-04 10:00', 90039, 'URINE CULTURE', 80002,"
        f" 'E. COLI {tag}', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        f"INSERT INTO microbiologyevents VALUES ({k}03, {pid}, {h + 2}, 3, NULL, '2180-05-07 00:00', NULL,"
        f" 70012, 'BLOOD CULTURE {f}', 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,"
        f" NULL, NULL, NULL)",
        f"INSERT INTO prescriptions VALUES ({pid}, {h + 2}, {k}01, NULL, 1, NULL, '2180-05-05 14:00', '2180-05-08 14:00',"
        f" 'MAIN', 'Vancomycin {tag}', NULL, NULL, NULL, NULL, NULL, '1000', 'mg', NULL, NULL, 2, 'IV')",
        f"INSERT INTO prescriptions VALUES ({pid}, {h + 2}, {k}02, NULL, 2, NULL, '2180-05-07 09:00', '2180-05-08 09:00',"
        f" 'MAIN', 'Meropenem {f}', NULL, NULL, NULL, NULL, NULL, '1', 'g', NULL, NULL, 3, 'IV')",
        f"INSERT INTO diagnoses_icd VALUES ({pid}, {h + 1}, 1, 'J189', 10)",
        f"INSERT INTO diagnoses_icd VALUES ({pid}, {h + 2}, 1, 'A419', 10)",
        f"INSERT INTO procedures_icd VALUES ({pid}, {h + 1}, 1, DATE '2179-01-02', '5A1955Z', 10)",
        f"INSERT INTO procedures_icd VALUES ({pid}, {h + 2}, 1, DATE '2180-05-05', '0BH17EZ', 10)",
        f"INSERT INTO discharge VALUES ('{pid}-DS-1', {pid}, {h + 1}, 'DS', 1, '2179-01-05 12:00', '2179-01-05 15:00',"
        f" 'Discharge summary {tag}: treated for pneumonia | improved.\nHome.')",
        f"INSERT INTO discharge VALUES ('{pid}-DS-2', {pid}, {h + 2}, 'DS', 2, '2180-05-09 10:00', '2180-05-09 16:00',"
        f" 'Discharge summary {f}: septic shock, patient expired.')",
        f"INSERT INTO radiology VALUES ('{pid}-RR-1', {pid}, {h + 2}, 'RR', 1, '2180-05-05 15:00', '2180-05-05 16:00',"
        f" 'CHEST X-RAY {tag}: right lower lobe opacity, pneumonia possible.')",
        f"INSERT INTO radiology VALUES ('{pid}-RR-2', {pid}, {h + 2}, 'RR', 2, '2180-05-06 11:30', '2180-05-06 14:00',"
        f" 'CHEST X-RAY {f}: worsening pneumonia.')",
        f"INSERT INTO omr VALUES ({pid}, DATE '2180-05-01', 1, 'Weight (Lbs)', '150 {tag}')",
        f"INSERT INTO omr VALUES ({pid}, DATE '2180-05-06', 1, 'Weight (Lbs)', '149 {f}')",
        f"INSERT INTO cxr_metadata VALUES ('d{k}1', {pid}, {k}501, 'CHEST (PORTABLE AP)', 'AP', 3000, 2500, 21800505,"
        f" 150000, 'CHEST (PORTABLE AP)', 'antero-posterior', 'Erect', '2180-05-05 15:00', 'files/p10/secret{k}1.jpg')",
        f"INSERT INTO cxr_metadata VALUES ('d{k}2', {pid}, {k}502, 'CHEST (PA AND LAT) {f}', 'PA', 3000, 2500, 21800507,"
        f" 90000, 'CHEST (PA AND LAT)', 'postero-anterior', 'Erect', '2180-05-07 09:00', 'files/p10/secret{k}2.jpg')",
        f"INSERT INTO cxr_labels VALUES ({pid}, {k}501, 1.0)",
        f"INSERT INTO _secret VALUES ({pid}, 'SECRET {f}')",
    ]
    return s


def make_fixture_db(path: str | Path, extra_patients: int = 3) -> Path:
    """Write the fixture database to `path` (overwritten); returns the path."""
    import duckdb

    path = Path(path)
    if path.exists():
        path.unlink()
    con = duckdb.connect(str(path))
    try:
        for stmt in filter(str.strip, _DDL.split(";")):
            con.execute(stmt)
        for stmt in _rows(PATIENT, "PAST", 1):
            con.execute(stmt)
        for i in range(extra_patients):
            for stmt in _rows(OTHER + i, "OTHER", 2 + i):
                con.execute(stmt)
        con.execute("INSERT INTO d_labitems VALUES (50912, 'Creatinine', 'Blood', 'Chemistry'),"
                    " (50971, 'Potassium', 'Blood', 'Chemistry'), (51006, 'Urea Nitrogen', 'Blood', 'Chemistry')")
        con.execute("INSERT INTO d_items VALUES (220045, 'Heart Rate', 'HR', 'chartevents', 'Routine Vital Signs',"
                    " 'bpm', 'Numeric', NULL, NULL)")
        con.execute("INSERT INTO d_icd_diagnoses VALUES ('J189', 10, 'Pneumonia, unspecified organism'),"
                    " ('A419', 10, 'Sepsis, unspecified organism'), ('4280', 9, 'Congestive heart failure, unspecified')")
        con.execute("INSERT INTO d_icd_procedures VALUES ('5A1955Z', 10, 'Respiratory Ventilation, Greater than 96"
                    " Consecutive Hours'), ('0BH17EZ', 10, 'Insertion of Endotracheal Airway into Trachea')")
    finally:
        con.close()
    return path
