"""MIMIC's own file layout: where each table's csv.gz lives in a PhysioNet download, and writing a cohort out in it.

A credentialed download unpacks as mimic-iv-3.1/{hosp,icu}/<table>.csv.gz, mimic-iv-note/<version>/note/<table>.csv.gz,
mimic-iv-ed/<version>/ed/<table>.csv.gz and mimic-cxr-jpg/<version>/mimic-cxr-2.0.0-{metadata,chexpert}.csv.gz.
The importer accepts SRC holding hosp/, icu/, note/, ed/ side by side (copy or link the module folders there) and
the CXR files either under SRC/cxr/ or in the folder given by --cxr.
"""
from __future__ import annotations

from pathlib import Path

from clinseek_demo import catalog

CXR_METADATA = "mimic-cxr-2.0.0-metadata.csv.gz"
CXR_CHEXPERT = "mimic-cxr-2.0.0-chexpert.csv.gz"
CHEXPERT_LABELS = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
                   "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
                   "Pneumothorax", "Support Devices"]
# CheXpert label -> the cohort's finding name in cxr_labels
CHEXPERT_TO_FINDING = {"Cardiomegaly": "cardiomegaly", "Pleural Effusion": "pleural_effusion",
                       "Consolidation": "consolidation", "Edema": "pulmonary_edema", "Pneumothorax": "pneumothorax",
                       "No Finding": "no_finding"}


def module_tables() -> dict[str, str]:
    """MIMIC table -> module folder (hosp, icu, note, ed)."""
    return {t: spec["module"] for t, spec in catalog.load_schema()["tables"].items() if spec["module"] != "cxr"}


def table_file(src: Path, table: str) -> Path:
    return Path(src) / module_tables()[table] / f"{table}.csv.gz"


def export_mimic_layout(db: Path, out: Path) -> list[Path]:
    """Write a cohort database as MIMIC's csv.gz files (hosp/, icu/, note/, ed/, cxr/). Returns the files written.

    Used to test the importer on MIMIC's own layout and compression, and to hand the demo to tools that read MIMIC
    files. Hidden tables (`_latent`, `cxr_labels` as a per-image table) are not exported; the CXR truth is written
    as a CheXpert-style label file (1.0 present, 0.0 absent).
    """
    import duckdb

    out = Path(out)
    con = duckdb.connect(str(db), read_only=True)
    written = []
    try:
        have = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        for table, module in module_tables().items():
            if table not in have:
                continue
            path = out / module / f"{table}.csv.gz"
            path.parent.mkdir(parents=True, exist_ok=True)
            cols = ", ".join(f'"{c}"' for c, _ in catalog.table_columns(table))
            con.execute(f"COPY (SELECT {cols} FROM \"{table}\") TO '{path}' (HEADER, DELIMITER ',', "
                        f"COMPRESSION gzip)")
            written.append(path)
        if "cxr_metadata" in have:
            cxr = out / "cxr"
            cxr.mkdir(parents=True, exist_ok=True)
            cols = ", ".join(f'"{c}"' for c, _ in catalog.table_columns("cxr_metadata"))
            con.execute(f"COPY (SELECT {cols} FROM cxr_metadata) TO '{cxr / CXR_METADATA}' "
                        f"(HEADER, COMPRESSION gzip)")
            written.append(cxr / CXR_METADATA)
            if "cxr_labels" in have:
                ours = CHEXPERT_TO_FINDING
                sel = ", ".join(
                    (f"max(CASE WHEN label = '{ours[name]}' THEN present::INT::DOUBLE END) AS \"{name}\""
                     if name in ours else f'NULL::DOUBLE AS "{name}"') for name in CHEXPERT_LABELS)
                con.execute(f"COPY (SELECT subject_id, study_id, {sel} FROM cxr_labels GROUP BY subject_id, study_id "
                            f"ORDER BY subject_id, study_id) TO '{cxr / CXR_CHEXPERT}' (HEADER, COMPRESSION gzip)")
                written.append(cxr / CXR_CHEXPERT)
    finally:
        con.close()
    return written
