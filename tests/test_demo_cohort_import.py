"""`clinseek data import-mimic-iv`: the generated cohort written in MIMIC's csv.gz layout imports back identically."""
from __future__ import annotations

import gzip
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from clinseek_demo.benchmark import build_tasks
from clinseek_demo.build import build_cohort
from clinseek_demo.cli import data
from clinseek_demo.mimic_files import CXR_METADATA, export_mimic_layout
from clinseek_demo.importer import import_mimic_iv
from clinseek.errors import UserError

# builds a cohort with images and round-trips it through csv.gz: ~7 s of CPU
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("import")
    build_cohort(root / "gen", patients=25, seed=4, images=True)
    export_mimic_layout(root / "gen" / "cohort.duckdb", root / "mimic")
    # MIMIC-CXR-JPG keeps images under files/ next to its metadata
    (root / "mimic" / "cxr" / "files").symlink_to(root / "gen" / "files")
    return root


def _hash(con, table):
    return con.execute(f'SELECT md5(string_agg(CAST(x AS VARCHAR), chr(10) ORDER BY rowid)) FROM "{table}" x'
                       ).fetchone()[0]


def test_export_uses_mimic_file_layout_and_gzip(exported):
    mimic = exported / "mimic"
    for rel in ("hosp/patients.csv.gz", "hosp/admissions.csv.gz", "hosp/labevents.csv.gz", "icu/chartevents.csv.gz",
                "icu/icustays.csv.gz", "note/discharge.csv.gz", "note/radiology.csv.gz", "ed/edstays.csv.gz",
                f"cxr/{CXR_METADATA}"):
        assert (mimic / rel).exists(), rel
    with gzip.open(mimic / "hosp" / "admissions.csv.gz", "rt") as fh:
        assert fh.readline().strip().split(",")[:4] == ["subject_id", "hadm_id", "admittime", "dischtime"]


def test_import_reproduces_every_table(exported, tmp_path):
    rep = import_mimic_iv(exported / "mimic", tmp_path / "mimic.duckdb")
    assert rep.warnings == []
    gen = duckdb.connect(str(exported / "gen" / "cohort.duckdb"), read_only=True)
    imp = duckdb.connect(str(tmp_path / "mimic.duckdb"), read_only=True)
    try:
        assert {"patients", "labevents", "chartevents", "radiology", "cxr_metadata", "cxr_labels"} <= set(rep.rows)
        for table in rep.rows:
            cols_gen = gen.execute(f"DESCRIBE \"{table}\"").fetchall()
            cols_imp = imp.execute(f"DESCRIBE \"{table}\"").fetchall()
            assert [c[:2] for c in cols_imp] == [c[:2] for c in cols_gen], table
            assert _hash(imp, table) == _hash(gen, table), table
    finally:
        gen.close()
        imp.close()
    # the benchmark builds on imported data the same way
    a = build_tasks(exported / "gen" / "cohort.duckdb", tmp_path / "a.jsonl", per_task=5, seed=1)
    b = build_tasks(tmp_path / "mimic.duckdb", tmp_path / "b.jsonl", per_task=5, seed=1)
    assert a.counts == b.counts
    assert (tmp_path / "a.jsonl").read_text() == (tmp_path / "b.jsonl").read_text()


def test_missing_columns_are_reported_and_bad_values_fail_loudly(exported, tmp_path):
    src = tmp_path / "src"
    (src / "hosp").mkdir(parents=True)
    for t in ("patients", "admissions"):
        (src / "hosp" / f"{t}.csv.gz").write_bytes((exported / "mimic" / "hosp" / f"{t}.csv.gz").read_bytes())
    # drop one column from patients
    with gzip.open(src / "hosp" / "patients.csv.gz", "rt") as fh:
        lines = [",".join(line.rstrip("\n").split(",")[:-1]) for line in fh]
    with gzip.open(src / "hosp" / "patients.csv.gz", "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    rep = import_mimic_iv(src, tmp_path / "a.duckdb")
    assert any("column dod missing" in w for w in rep.warnings)
    assert any("icu/chartevents.csv.gz not found" in w for w in rep.warnings)
    # a malformed timestamp is an error with the table's folder named, and no half-written database remains
    with gzip.open(src / "hosp" / "admissions.csv.gz", "rt") as fh:
        text = fh.read().splitlines()
    parts = text[1].split(",")
    parts[2] = "not-a-time"
    text[1] = ",".join(parts)
    with gzip.open(src / "hosp" / "admissions.csv.gz", "wt") as fh:
        fh.write("\n".join(text) + "\n")
    with pytest.raises(UserError, match="could not import"):
        import_mimic_iv(src, tmp_path / "b.duckdb")
    assert not (tmp_path / "b.duckdb").exists() and not (tmp_path / "b.duckdb.importing").exists()


def test_tables_the_generator_lacks_are_imported_with_mimic_types(exported, tmp_path):
    src = tmp_path / "src"
    (src / "hosp").mkdir(parents=True)
    for t in ("patients", "admissions"):
        (src / "hosp" / f"{t}.csv.gz").write_bytes((exported / "mimic" / "hosp" / f"{t}.csv.gz").read_bytes())
    with gzip.open(src / "hosp" / "emar.csv.gz", "wt") as fh:
        fh.write("subject_id,hadm_id,emar_id,emar_seq,poe_id,pharmacy_id,enter_provider_id,charttime,medication,"
                 "event_txt,scheduletime,storetime\n"
                 "10000000,20000000,10000000-1,1,10000000-5,,P1,2132-12-12 08:00:00,Heparin,Administered,,"
                 "2132-12-12 08:05:00\n")
    rep = import_mimic_iv(src, tmp_path / "x.duckdb")
    assert rep.rows["emar"] == 1 and not any("emar" in w for w in rep.warnings)
    con = duckdb.connect(str(tmp_path / "x.duckdb"), read_only=True)
    types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_name = 'emar'").fetchall())
    assert types["charttime"] == "TIMESTAMP" and types["emar_seq"] == "INTEGER" and types["pharmacy_id"] == "INTEGER"
    assert con.execute("SELECT medication, pharmacy_id FROM emar").fetchone() == ("Heparin", None)
    con.close()


def test_import_needs_hosp_tables(tmp_path):
    with pytest.raises(UserError, match="hosp/patients.csv.gz"):
        import_mimic_iv(tmp_path, tmp_path / "x.duckdb")


def test_cli_import(exported, tmp_path):
    res = CliRunner().invoke(data, ["import-mimic-iv", str(exported / "mimic"), "--out", str(tmp_path / "m.duckdb")])
    assert res.exit_code == 0, res.output
    assert "patients 25" in res.output and Path(tmp_path / "m.duckdb").exists()
