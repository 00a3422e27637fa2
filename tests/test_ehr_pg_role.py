"""docs/ehr.md's read-only role, run as written: the role reads the EHR tables through the toolset, and cannot read
the statistics and activity views even without the guard (defence in depth for issue: pg_stats / pg_stat_activity).
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from clinseek.errors import ToolError
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.testing import CUTOFF, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset

pytestmark = pytest.mark.postgres
DOC = Path(__file__).resolve().parent.parent / "docs" / "ehr.md"
SCHEMA = "ehr_role"


def documented_role_sql() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### A read-only role for clinseek", 1)[1]
    return re.search(r"```sql\n(.*?)```", section, re.S).group(1)


def _as_reader(dsn: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"clinseek_reader@{host}"))


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    dsn = os.environ.get("CLINSEEK_TEST_PG_DSN")
    if not dsn:
        pytest.skip("CLINSEEK_TEST_PG_DSN is not set (source .ci/start_postgres.sh)")
    import psycopg

    from clinseek_ehr.pgload import load_duckdb_into_postgres

    load_duckdb_into_postgres(make_fixture_db(tmp_path_factory.mktemp("role") / "f.duckdb"), dsn, schema=SCHEMA)
    dbname = urlsplit(dsn).path.lstrip("/")
    sql = documented_role_sql()
    sql = re.sub(r"\bSCHEMA ehr\b", f"SCHEMA {SCHEMA}", sql).replace("DATABASE mimic", f"DATABASE {dbname}")
    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute(f"ANALYZE {SCHEMA}.labevents")
        exists = con.execute("SELECT 1 FROM pg_roles WHERE rolname = 'clinseek_reader'").fetchone()
        if exists:
            con.execute("DROP OWNED BY clinseek_reader")
            con.execute("DROP ROLE clinseek_reader")
        con.execute(sql)
        assert con.execute("SELECT count(*) FROM pg_stats WHERE schemaname = %s", (SCHEMA,)).fetchone()[0] > 0
    return _as_reader(dsn)


def test_the_documented_role_reads_the_ehr_through_the_toolset(reader):
    ts = EhrToolset(EhrConfig(database=reader, pg_schema=SCHEMA, pool_size=1), None)
    ts.open()
    try:
        e = Episode(binding=Binding(qid="q", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=None)
        out = ts.ehr_sql(e, "SELECT count(DISTINCT subject_id) AS n FROM labevents")
        assert out.splitlines()[1] == "1"
    finally:
        ts.close()


@pytest.mark.parametrize("relation", ["pg_catalog.pg_stats", "pg_catalog.pg_stat_activity",
                                      "pg_catalog.pg_settings", "pg_catalog.pg_stat_user_tables"])
def test_the_documented_role_cannot_read_statistics_even_without_the_guard(reader, relation):
    ts = EhrToolset(EhrConfig(database=reader, pg_schema=SCHEMA, pool_size=1), None)
    ts.open()
    try:
        with pytest.raises(ToolError, match="permission denied"):
            ts.backend.run(f"SELECT * FROM {relation}", 5, 5.0)   # straight to the server, no guard
    finally:
        ts.close()


def test_the_documented_role_is_not_a_superuser(reader):
    import psycopg

    with psycopg.connect(reader) as con:
        assert con.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0] is False
        with pytest.raises(psycopg.Error):
            con.execute("SELECT pg_read_file('/etc/hostname')")
