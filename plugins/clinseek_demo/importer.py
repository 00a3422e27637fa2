"""`clinseek data import-mimic-iv SRC --out DB`: a credentialed MIMIC-IV 3.1 download -> the cohort's DuckDB layout.

Each csv.gz is read by DuckDB with MIMIC's column types given explicitly (a malformed value fails loudly instead of
becoming NULL), columns are put in MIMIC's order, and each table is stored sorted by (subject_id, time) like the
synthetic cohort. MIMIC-CXR-JPG metadata gains `study_datetime` (from StudyDate + StudyTime) and `path`; the
CheXpert label file, when present, becomes `cxr_labels` (present = a positive mention). Every MIMIC-IV table the
reference schema lists is imported when its file is there (emar, pharmacy, poe, ... too), and only the tables the
synthetic cohort also has are reported when missing. Nothing leaves the machine.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from clinseek_demo import schema
from clinseek_demo.mimic_files import CHEXPERT_TO_FINDING, CXR_CHEXPERT, CXR_METADATA, module_tables, table_file
from clinseek.errors import UserError

REQUIRED = ("patients", "admissions")


@dataclass
class ImportReport:
    db: Path
    rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _sql_str(p: Path) -> str:
    return "'" + str(p).replace("'", "''") + "'"


def _read_csv(path: Path, table: str, header: set[str] | None = None) -> str:
    types = ", ".join(f"'{n}': '{t}'" for n, t in schema.columns(table)
                      if n not in ("study_datetime", "path") and (header is None or n in header))
    return (f"read_csv({_sql_str(path)}, header = true, delim = ',', quote = '\"', escape = '\"', "
            f"types = {{{types}}}, compression = 'gzip', timestampformat = '%Y-%m-%d %H:%M:%S', "
            f"dateformat = '%Y-%m-%d')")


def _header(con, path: Path) -> list[str]:
    return [r[0] for r in con.execute(
        f"DESCRIBE SELECT * FROM read_csv({_sql_str(path)}, header = true, all_varchar = true, "
        f"compression = 'gzip')").fetchall()]


def import_mimic_iv(src: Path, out: Path, *, cxr_dir: Path | None = None, memory_limit: str = "2GB",
                    progress: Callable[[str], None] | None = None) -> ImportReport:
    import duckdb

    start = time.perf_counter()
    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise UserError(f"MIMIC-IV folder not found: {src}", hint="point SRC at the folder holding hosp/ and icu/")
    missing = [t for t in REQUIRED if not table_file(src, t).exists()]
    if missing:
        raise UserError(f"{src} has no {', '.join(str(table_file(src, t).relative_to(src)) for t in missing)}",
                        hint="SRC must hold MIMIC-IV's hosp/ (and icu/, note/, ed/) folders of .csv.gz files")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".importing")
    if tmp.exists():
        tmp.unlink()
    report = ImportReport(db=out)
    con = duckdb.connect(str(tmp))
    try:
        con.execute(f"SET memory_limit = '{memory_limit}'")
        for table in module_tables():
            path = table_file(src, table)
            if not path.exists():
                if table in schema.MIMIC_TABLES + schema.DICTIONARY_TABLES:  # what the tools and tasks expect
                    report.warnings.append(f"{path.relative_to(src)} not found: table {table} skipped")
                continue
            _import_table(con, path, table, report)
            if progress:
                progress(f"{table}: {report.rows[table]} rows")
        cxr = cxr_dir or src / "cxr"
        if (cxr / CXR_METADATA).exists():
            _import_cxr(con, cxr, report)
        elif cxr_dir is not None:
            raise UserError(f"{cxr / CXR_METADATA} not found", hint="--cxr must be the MIMIC-CXR-JPG folder")
        con.execute("CHECKPOINT")
    except duckdb.Error as exc:
        con.close()
        tmp.unlink(missing_ok=True)
        raise UserError(f"could not import MIMIC-IV: {str(exc).splitlines()[0]}", where=str(src),
                        hint="check that the files are the unmodified PhysioNet csv.gz downloads") from None
    con.close()
    tmp.replace(out)
    report.seconds = time.perf_counter() - start
    return report


def _import_table(con, path: Path, table: str, report: ImportReport) -> None:
    header = set(_header(con, path))
    cols = []
    for name, typ in schema.columns(table):
        if name in header:
            cols.append(f'"{name}"')
        else:
            cols.append(f'NULL::{typ} AS "{name}"')
            report.warnings.append(f"{table}: column {name} missing from {path.name}, filled with NULL")
    keys = [k for k in schema.SORT_KEYS.get(table, []) if k in header]
    order = f" ORDER BY {', '.join(chr(34) + k + chr(34) for k in keys)}" if keys else ""
    con.execute(f'CREATE TABLE "{table}" AS SELECT {", ".join(cols)} FROM {_read_csv(path, table, header)}{order}')
    report.rows[table] = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]


def _import_cxr(con, cxr: Path, report: ImportReport) -> None:
    meta = cxr / CXR_METADATA
    # MIMIC-CXR-JPG stores .jpg; the synthetic cohort writes .png. Use whichever the first image has on disk.
    first = con.execute(f"SELECT subject_id, study_id, dicom_id FROM {_read_csv(meta, 'cxr_metadata')} LIMIT 1"
                        ).fetchone()
    ext = ".jpg"
    if first:
        stem = Path("files") / f"p{str(first[0])[:2]}" / f"p{first[0]}" / f"s{first[1]}" / first[2]
        for root in (cxr, cxr.parent):
            if (root / stem.with_suffix(".png")).exists():
                ext = ".png"
        if not any((root / stem.with_suffix(ext)).exists() for root in (cxr, cxr.parent)):
            report.warnings.append(f"no image file for {stem}{ext}: paths in cxr_metadata point where MIMIC-CXR-JPG "
                                   f"keeps them, relative to the database's folder")
    base = [f'"{n}"' for n, _ in schema.columns("cxr_metadata") if n not in ("study_datetime", "path")]
    con.execute(f"""
        CREATE TABLE cxr_metadata AS
        SELECT {", ".join(base)},
               strptime(CAST(StudyDate AS VARCHAR) || lpad(CAST(CAST(floor(StudyTime) AS BIGINT) AS VARCHAR), 6, '0'),
                        '%Y%m%d%H%M%S')
                 + to_microseconds(CAST(round((StudyTime - floor(StudyTime)) * 1e6) AS BIGINT)) AS study_datetime,
               'files/p' || substr(CAST(subject_id AS VARCHAR), 1, 2) || '/p' || subject_id || '/s' || study_id
                 || '/' || dicom_id || '{ext}' AS path
        FROM {_read_csv(meta, "cxr_metadata")}
        ORDER BY subject_id, study_datetime, dicom_id""")
    report.rows["cxr_metadata"] = con.execute("SELECT count(*) FROM cxr_metadata").fetchone()[0]
    labels = cxr / CXR_CHEXPERT
    if labels.exists():
        parts = " UNION ALL ".join(
            f"SELECT m.dicom_id, CAST(l.study_id AS INTEGER) AS study_id, CAST(l.subject_id AS INTEGER) AS subject_id, "
            f"'{ours}' AS label, "
            f"coalesce(l.\"{theirs}\" = 1.0, false) AS present FROM lab l JOIN cxr_metadata m USING (study_id)"
            for theirs, ours in CHEXPERT_TO_FINDING.items())
        con.execute(f"CREATE TEMP VIEW lab AS SELECT * FROM read_csv({_sql_str(labels)}, header = true, "
                    f"compression = 'gzip')")
        con.execute(f"CREATE TABLE cxr_labels AS SELECT * FROM ({parts}) "
                    f"ORDER BY subject_id, study_id, dicom_id, label")
        con.execute("DROP VIEW lab")
        report.rows["cxr_labels"] = con.execute("SELECT count(*) FROM cxr_labels").fetchone()[0]
