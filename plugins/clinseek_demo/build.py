"""Build the synthetic cohort: DuckDB tables in MIMIC-IV's layout plus PNG chest radiographs, chunked by patients.

Patients are simulated in fixed blocks of model.BLOCK with their own random streams, so the rows do not depend on
the chunk size; each chunk's rows go to staging tables and every table is sorted by (subject_id, time) once at the
end, by DuckDB, which spills to disk under its memory limit (bounded memory at 100k patients).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from clinseek_demo import DB_NAME, GENERATOR_VERSION, dictionaries, ed_records, events, model, records, schema
from clinseek.errors import UserError

MAX_PATIENTS = 100_000  # row ids are per-patient ranges inside int32 (see events.ROWS_PER_PATIENT)


@dataclass
class BuildReport:
    db: Path
    patients: int
    seed: int
    rows: dict[str, int] = field(default_factory=dict)
    images: int = 0
    seconds: float = 0.0


def generate_block(seed: int, block: int, first: int, n: int) -> dict[str, pd.DataFrame]:
    """All rows of one block of patients, keyed by table name (MIMIC columns, plus `_`-prefixed helpers)."""
    b = events.Block(seed, block, first, n)
    core = records.core_tables(b)
    icu_stay, ed_stay = core.pop("_icu_stay"), core.pop("_ed_stay")
    out = dict(core)
    out["labevents"], _ = events.labs(b)
    out["chartevents"] = events.chartevents(b, icu_stay)
    out["outputevents"] = events.outputevents(b, icu_stay)
    out["inputevents"] = events.inputevents(b, icu_stay)
    out["edstays"], out["triage"], out["vitalsign"] = events.ed_tables(b, ed_stay)
    out["prescriptions"] = records.prescriptions(b)
    out["microbiologyevents"] = records.microbiology(b)
    pressor = set(out["inputevents"]["hadm_id"].tolist()) if len(out["inputevents"]) else set()
    out["diagnoses_icd"], out["procedures_icd"], out["_latent"] = records.codes(b, pressor)
    meta, out["cxr_labels"] = records.cxr_studies(b)
    out["discharge"], out["radiology"] = records.notes(b, meta, out["diagnoses_icd"], dictionaries.icd10cm_titles())
    out["_cxr_findings"] = meta[["dicom_id", "study_id", "path", "aux_findings"]] if len(meta) else meta
    out["cxr_metadata"] = meta[[c for c, _ in schema.columns("cxr_metadata")]] if len(meta) else meta
    out["omr"] = records.omr(b)
    # ED-only visits and the ED detail tables draw from their own streams: every table above keeps its rows
    ed_only = ed_records.ed_only_visits(b)
    for t in ("edstays", "triage", "vitalsign"):
        if len(ed_only[t]):
            out[t] = pd.concat([out[t].astype({"hadm_id": "Int64"}) if t == "edstays" else out[t], ed_only[t]],
                               ignore_index=True)
    out.update(ed_records.ed_details(b, out["edstays"], out["triage"], out["diagnoses_icd"],
                                     dictionaries.icd10cm_titles()))
    return out


def _write_images(root: Path, findings: pd.DataFrame, seed: int, size: int, workers: int) -> int:
    from clinseek_demo.render import write_images

    jobs = [(str(root / r.path), tuple(sorted(r.aux_findings)), seed, int(r.study_id), size)
            for r in findings.itertuples(index=False)]
    return write_images(jobs, workers)


def build_cohort(out_dir: Path, patients: int = 200, seed: int = 7, *, images: bool = True,
                 chunk_patients: int = 5000, memory_limit: str = "1GB", workers: int = 0,
                 progress: Callable[[str], None] | None = None) -> BuildReport:
    """Write `out_dir/cohort.duckdb` (and `out_dir/files/...png` unless images=False). Same seed, same rows."""
    import duckdb

    if patients < 1 or patients > MAX_PATIENTS:
        raise UserError(f"--patients must be between 1 and {MAX_PATIENTS}, got {patients}")
    if seed < 0:
        raise UserError(f"--seed must be 0 or more, got {seed}")
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    db = out_dir / DB_NAME
    if db.exists():  # rebuilding: drop the old database and its images, so no stale file outlives it
        db.unlink()
        import shutil

        shutil.rmtree(out_dir / "files", ignore_errors=True)
    chunk_patients = max(model.BLOCK, chunk_patients - chunk_patients % model.BLOCK)
    con = duckdb.connect(str(db))
    con.execute(f"SET memory_limit='{memory_limit}'")
    tmp = out_dir / ".duckdb_tmp"
    con.execute(f"SET temp_directory='{tmp}'")
    staged = [t for t in schema.all_tables() if t not in schema.DICTIONARY_TABLES and t != "_build_info"]
    for t in staged:
        con.execute(schema.create_sql(t, f"_stage_{t}"))
    report = BuildReport(db=db, patients=patients, seed=seed)
    n_blocks = (patients + model.BLOCK - 1) // model.BLOCK
    blocks_per_chunk = chunk_patients // model.BLOCK
    for c0 in range(0, n_blocks, blocks_per_chunk):
        chunk: dict[str, list[pd.DataFrame]] = {}
        for blk in range(c0, min(c0 + blocks_per_chunk, n_blocks)):
            first = blk * model.BLOCK
            n = min(model.BLOCK, patients - first)
            for t, df in generate_block(seed, blk, first, n).items():
                chunk.setdefault(t, []).append(df)
        for t in staged:
            frames = [f for f in chunk.get(t, []) if len(f)]
            if not frames:
                continue
            df = pd.concat(frames, ignore_index=True)
            con.register("chunk_df", df)
            con.execute(f'INSERT INTO "_stage_{t}" BY NAME SELECT * FROM chunk_df')
            con.unregister("chunk_df")
        if images:
            frames = [f for f in chunk.get("_cxr_findings", []) if len(f)]
            if frames:
                report.images += _write_images(out_dir, pd.concat(frames, ignore_index=True), seed, 256,
                                               workers or (os.cpu_count() or 1))
        if progress:
            progress(f"patients {min((c0 + blocks_per_chunk) * model.BLOCK, patients)}/{patients}")
        del chunk
    for t in staged:
        keys = ", ".join(f'"{k}"' for k in schema.SORT_KEYS.get(t, ["subject_id"]))
        con.execute(f'CREATE TABLE "{t}" AS SELECT * FROM "_stage_{t}" ORDER BY {keys}')
        con.execute(f'DROP TABLE "_stage_{t}"')
    for t, df in (("d_labitems", dictionaries.d_labitems()), ("d_items", dictionaries.d_items()),
                  ("d_icd_diagnoses", dictionaries.d_icd_diagnoses()),
                  ("d_icd_procedures", dictionaries.d_icd_procedures())):
        con.execute(schema.create_sql(t, f"_stage_{t}"))
        con.register("dict_df", df)
        con.execute(f'INSERT INTO "_stage_{t}" BY NAME SELECT * FROM dict_df')
        con.unregister("dict_df")
        keys = ", ".join(f'"{k}"' for k in schema.SORT_KEYS[t])
        con.execute(f'CREATE TABLE "{t}" AS SELECT * FROM "_stage_{t}" ORDER BY {keys}')
        con.execute(f'DROP TABLE "_stage_{t}"')
    con.execute(schema.create_sql("_build_info"))
    con.executemany('INSERT INTO "_build_info" VALUES (?, ?)',
                    [("generator", "clinseek_demo"), ("generator_version", GENERATOR_VERSION),
                     ("patients", str(patients)), ("seed", str(seed)), ("images", str(bool(images)).lower())])
    for t in schema.all_tables():
        report.rows[t] = con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
    con.execute("CHECKPOINT")
    con.close()
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    report.seconds = time.perf_counter() - start
    return report
