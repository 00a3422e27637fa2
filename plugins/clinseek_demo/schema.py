"""DuckDB layout of the cohort: MIMIC's table and column names, order and types, plus the sort order of each table.

Reference SQL types map to DuckDB as: CHAR/VARCHAR/TEXT -> VARCHAR, TIMESTAMP(n) -> TIMESTAMP, FLOAT / DOUBLE
PRECISION / NUMERIC -> DOUBLE (Postgres FLOAT is double precision; NUMERIC without scale would become DuckDB's
DECIMAL(18,3) and lose precision), REAL -> FLOAT, INTEGER / SMALLINT / DATE unchanged.
"""
from __future__ import annotations

import re

from clinseek_demo import catalog

# Event and fact tables in MIMIC's modules (what `clinseek data demo` writes), then dictionaries, then CXR.
MIMIC_TABLES = ("patients", "admissions", "transfers", "services", "icustays", "labevents", "chartevents",
                "inputevents", "outputevents", "microbiologyevents", "prescriptions", "diagnoses_icd",
                "procedures_icd", "omr", "edstays", "triage", "vitalsign", "discharge", "radiology",
                "diagnosis", "medrecon", "pyxis")
DICTIONARY_TABLES = ("d_labitems", "d_items", "d_icd_diagnoses", "d_icd_procedures")
CXR_TABLES = ("cxr_metadata",)
HIDDEN_TABLES = ("cxr_labels", "_latent", "_build_info")  # ground truth: never exposed to an agent

SORT_KEYS = {
    "patients": ["subject_id"],
    "admissions": ["subject_id", "admittime", "hadm_id"],
    "transfers": ["subject_id", "intime", "transfer_id"],
    "services": ["subject_id", "transfertime", "hadm_id"],
    "icustays": ["subject_id", "intime", "stay_id"],
    "labevents": ["subject_id", "charttime", "labevent_id"],
    "chartevents": ["subject_id", "charttime", "itemid", "stay_id"],
    "inputevents": ["subject_id", "starttime", "itemid", "orderid"],
    "outputevents": ["subject_id", "charttime", "itemid", "stay_id"],
    "microbiologyevents": ["subject_id", "charttime", "microevent_id"],
    "prescriptions": ["subject_id", "starttime", "pharmacy_id"],
    "diagnoses_icd": ["subject_id", "hadm_id", "seq_num"],
    "procedures_icd": ["subject_id", "chartdate", "hadm_id", "seq_num"],
    "omr": ["subject_id", "chartdate", "seq_num", "result_name"],
    "edstays": ["subject_id", "intime", "stay_id"],
    "triage": ["subject_id", "stay_id"],
    "vitalsign": ["subject_id", "charttime", "stay_id"],
    "diagnosis": ["subject_id", "stay_id", "seq_num"],
    "medrecon": ["subject_id", "charttime", "stay_id", "name"],
    "pyxis": ["subject_id", "charttime", "stay_id", "med_rn"],
    "discharge": ["subject_id", "charttime", "note_id"],
    "radiology": ["subject_id", "charttime", "note_id"],
    "d_labitems": ["itemid"],
    "d_items": ["itemid"],
    "d_icd_diagnoses": ["icd_version", "icd_code"],
    "d_icd_procedures": ["icd_version", "icd_code"],
    "cxr_metadata": ["subject_id", "study_datetime", "dicom_id"],
    "cxr_labels": ["subject_id", "study_id", "dicom_id", "label"],
    "_latent": ["subject_id", "hadm_id"],
}

EXTRA_COLUMNS = {
    # derived columns the contract adds to MIMIC-CXR's metadata file
    "cxr_metadata": [("study_datetime", "TIMESTAMP"), ("path", "VARCHAR")],
}
HIDDEN_COLUMNS = {
    "cxr_labels": [("dicom_id", "VARCHAR"), ("study_id", "INTEGER"), ("subject_id", "INTEGER"),
                   ("label", "VARCHAR"), ("present", "BOOLEAN")],
    "_latent": [("subject_id", "INTEGER"), ("hadm_id", "INTEGER"), ("conditions", "VARCHAR"),
                ("severity_admit", "DOUBLE"), ("severity_peak", "DOUBLE"), ("peak_hour", "DOUBLE"),
                ("recovery_tau_h", "DOUBLE"), ("dies", "BOOLEAN"), ("icu", "BOOLEAN"), ("readmit_30d", "BOOLEAN"),
                ("frailty", "DOUBLE"), ("ventilated", "BOOLEAN")],
}


def duckdb_type(ref_type: str) -> str:
    t = ref_type.upper().strip()
    base = re.sub(r"\(.*\)", "", t).strip()
    if base in ("CHAR", "VARCHAR", "TEXT"):
        return "VARCHAR"
    if base.startswith("TIMESTAMP"):
        return "TIMESTAMP"
    if base in ("FLOAT", "DOUBLE PRECISION", "DOUBLE", "NUMERIC"):
        return "DOUBLE"
    if base == "REAL":
        return "FLOAT"
    if base in ("INTEGER", "SMALLINT", "DATE", "BOOLEAN", "BIGINT"):
        return base
    raise ValueError(f"no DuckDB type for reference type {ref_type!r}")


def columns(table: str) -> list[tuple[str, str]]:
    """(name, DuckDB type) of a table in the cohort database, in order."""
    if table in HIDDEN_COLUMNS:
        return list(HIDDEN_COLUMNS[table])
    if table == "_build_info":
        return [("key", "VARCHAR"), ("value", "VARCHAR")]
    cols = [(n, duckdb_type(t)) for n, t in catalog.table_columns(table)]
    return cols + EXTRA_COLUMNS.get(table, [])


def create_sql(table: str, name: str | None = None) -> str:
    cols = ", ".join(f'"{n}" {t}' for n, t in columns(table))
    return f'CREATE TABLE "{name or table}" ({cols})'


def all_tables() -> tuple[str, ...]:
    return MIMIC_TABLES + DICTIONARY_TABLES + CXR_TABLES + HIDDEN_TABLES
