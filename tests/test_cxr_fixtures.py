"""Shared data for the cxr tests (no tests here): a small DuckDB with cxr_metadata and images on disk."""
from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from clinseek_demo.cxr_images import render_cxr
from clinseek.toolsets import Binding, Episode

CUTOFF = datetime(2150, 1, 10, 12, 0)

# (subject_id, study_id, when, view, findings or a special file kind)
STUDIES = [
    (10, 501, datetime(2150, 1, 1, 8, 0), "PA", ()),
    (10, 502, datetime(2150, 1, 5, 9, 30), "AP", ("cardiomegaly", "pleural_effusion")),
    (10, 502, datetime(2150, 1, 5, 9, 30), "LATERAL", "lateral"),
    (10, 503, datetime(2150, 2, 1, 7, 0), "PA", ("pneumothorax",)),  # after the cutoff
    (10, 504, CUTOFF, "PA", ("consolidation",)),  # exactly at the cutoff
    (10, 505, datetime(2150, 1, 7, 0, 0), "PA", "corrupt"),
    (10, 506, datetime(2150, 1, 8, 0, 0), "PA", "escape"),
    (10, 508, datetime(2150, 1, 9, 12, 0), "LATERAL", "lateral"),  # no frontal image
    (20, 601, datetime(2150, 1, 3, 10, 0), "PA", ("pulmonary_edema",)),  # another patient
]


def make_db(root: Path, extra: list | None = None, rg1: bool = False) -> Path:
    """Write images under root/files and a DuckDB root/cohort.duckdb; return the database path."""
    import duckdb

    rows = []
    studies = STUDIES + (extra or [])
    if rg1:
        studies = studies + [(10, 507, datetime(2150, 1, 9, 0, 0), "PA", "rg1")]
    for i, (subject, study, when, view, kind) in enumerate(studies):
        dicom_id = f"d{study}-{view.lower()}"
        rel = f"files/p{subject}/s{study}/{dicom_id}.png"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "corrupt":
            path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
        elif kind == "escape":
            rel = "../outside.png"
            Image.fromarray(np.zeros((64, 64), np.uint8)).save(root.parent / "outside.png")
        elif kind == "rg1":
            from pydicom.data import get_testdata_file

            rel = rel.replace(".png", ".dcm")
            shutil.copy(get_testdata_file("RG1_UNCR.dcm"), root / rel)
        elif kind == "lateral":
            Image.fromarray(np.rot90(render_cxr(frozenset(), np.random.default_rng(i))).copy()).save(path)
        else:
            Image.fromarray(render_cxr(frozenset(kind), np.random.default_rng([7, study]))).save(path)
        rows.append((dicom_id, subject, study, view, int(when.strftime("%Y%m%d")),
                     float(when.strftime("%H%M%S")), when, rel))
    db = root / "cohort.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE TABLE cxr_metadata (dicom_id VARCHAR, subject_id INTEGER, study_id INTEGER, "
                "ViewPosition VARCHAR, StudyDate INTEGER, StudyTime DOUBLE, study_datetime TIMESTAMP, path VARCHAR)")
    con.executemany("INSERT INTO cxr_metadata VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()
    return db


def context(tmp_path: Path, recipe_dir: Path | None = None):
    warnings: list[str] = []
    return SimpleNamespace(recipe_dir=recipe_dir or tmp_path, cache_dir=tmp_path / "cache",
                           warn=warnings.append, warnings=warnings)


def episode(subject_id=10, when=CUTOFF, qid="q1") -> Episode:
    return Episode(binding=Binding(qid=qid, subject_id=subject_id, hadm_id=None, prediction_time=when), task=None)
