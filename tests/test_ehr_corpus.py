"""The adversarial SQL corpus: every query is refused or bounded, and none shows another patient's row, a row
after the cutoff, or a future value. The same corpus runs on DuckDB and on PostgreSQL (same rows on both)."""
from __future__ import annotations

import os

import pytest

from clinseek.errors import ToolError
from clinseek.toolsets import Binding, Episode
from clinseek_ehr.testing import CUTOFF, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset
from test_ehr_tools import leaks

MAX_CHARS = 4000
R, OK, B = "refuse", "ok", "bounded"       # refused by the guard / answered / refused, failed or stopped
DUCK = "duckdb-only"                       # DuckDB syntax with no PostgreSQL transpilation: compared on DuckDB only

CORPUS: list[tuple[str, str, str]] = [
    # writes and DDL
    ("insert", "INSERT INTO labevents VALUES (1)", R),
    ("update", "UPDATE labevents SET valuenum = 0", R),
    ("delete", "DELETE FROM labevents", R),
    ("drop", "DROP TABLE labevents", R),
    ("create_table", "CREATE TABLE x AS SELECT * FROM labevents", R),
    ("create_temp", "CREATE TEMP TABLE x AS SELECT 1", R),
    ("create_view", "CREATE VIEW v AS SELECT * FROM labevents", R),
    ("create_macro", "CREATE MACRO m(a) AS a", R),
    ("alter", "ALTER TABLE labevents ADD COLUMN x INT", R),
    ("truncate", "TRUNCATE labevents", R),
    ("select_into", "SELECT * INTO stolen FROM labevents", R),
    ("copy_to", "COPY (SELECT * FROM labevents) TO '/tmp/x.csv'", R),
    ("copy_from", "COPY labevents FROM '/etc/passwd'", R),
    ("export", "EXPORT DATABASE '/tmp/x'", R),
    ("attach", "ATTACH '/tmp/other.duckdb' AS o", R),
    ("detach", "DETACH clinseek_src", R),
    ("pragma", "PRAGMA database_list", R),
    ("set", "SET enable_external_access = true", R),
    ("reset", "RESET lock_configuration", R),
    ("install", "INSTALL httpfs", R),
    ("load", "LOAD httpfs", R),
    ("call", "CALL pragma_table_info('labevents')", R),
    ("use", "USE clinseek_src", R),
    ("begin", "BEGIN TRANSACTION", R),
    ("checkpoint", "CHECKPOINT", R),
    ("vacuum", "VACUUM", R),
    ("explain", "EXPLAIN SELECT * FROM labevents", R),
    ("describe", "DESCRIBE labevents", R),
    ("summarize", "SUMMARIZE labevents", R),
    ("show", "SHOW TABLES", R),
    ("grant", "GRANT SELECT ON labevents TO public", R),
    ("pivot_stmt", "PIVOT labevents ON itemid USING max(valuenum)", R),
    # several statements, comments and case
    ("two_selects", "SELECT 1; SELECT 2", R),
    ("select_then_drop", "SELECT * FROM labevents; DROP TABLE labevents", R),
    ("comment_hides_second", "SELECT 1 AS a; -- harmless\nSELECT * FROM _secret", R),
    ("block_comment_table", "SELECT * FROM /* labevents */ _secret", R),
    ("comment_breakout", "SELECT 1 AS a -- */ ; SELECT * FROM clinseek_src.main._secret; /*", OK),
    ("block_comment_breakout", "SELECT 1 AS a /* x */ /* */ SELECT * FROM clinseek_src.main._secret", R),
    ("trailing_comment", "SELECT count(*) AS n FROM labevents -- ; DROP TABLE labevents", OK),
    ("leading_comment", "/* DROP TABLE x */ SELECT count(*) AS n FROM labevents", OK),
    ("mixed_case", "SeLeCt LaBeVeNt_Id FrOm LABEVENTS oRdEr By 1", OK),
    ("quoted_mixed_case", 'SELECT labevent_id FROM "LabEvents" ORDER BY 1', OK),
    ("quoted_hidden", 'SELECT * FROM "_secret"', R),
    ("upper_hidden", "SELECT * FROM CXR_LABELS", R),
    ("string_table_name", "SELECT labevent_id FROM 'labevents' ORDER BY 1", DUCK),
    ("trailing_semicolon", "SELECT count(*) AS n FROM labevents;", OK),
    ("empty", "   ", R),
    ("only_comment", "-- nothing", R),
    ("huge_query", "SELECT 1 AS a" + " " * 25_000, R),
    # file, network and catalogue access
    ("read_csv", "SELECT * FROM read_csv('/etc/passwd')", R),
    ("read_csv_auto", "SELECT * FROM read_csv_auto('/etc/passwd')", R),
    ("read_parquet", "SELECT * FROM read_parquet('/tmp/x.parquet')", R),
    ("read_json", "SELECT * FROM read_json_auto('/tmp/x.json')", R),
    ("read_text", "SELECT * FROM read_text('/etc/hostname')", R),
    ("read_text_scalar", "SELECT (SELECT content FROM read_text('/etc/hostname')) AS c", R),
    ("glob", "SELECT * FROM glob('/*')", R),
    ("file_literal", "SELECT * FROM '/etc/passwd'", R),
    ("url_literal", "SELECT * FROM 'https://example.org/x.parquet'", R),
    ("parquet_scan", "SELECT * FROM parquet_scan('x.parquet')", R),
    ("sqlite_scan", "SELECT * FROM sqlite_scan('x.db', 't')", R),
    ("postgres_scan", "SELECT * FROM postgres_scan('dbname=x', 'public', 't')", R),
    ("query_fn", "SELECT * FROM query('SELECT * FROM clinseek_src.main._secret')", R),
    ("query_table_fn", "SELECT * FROM query_table('_secret')", R),
    ("range_table_fn", "SELECT * FROM range(10)", R),
    ("info_schema", "SELECT * FROM information_schema.tables", R),
    ("info_schema_bare", "SELECT * FROM tables", R),
    ("duckdb_tables", "SELECT * FROM duckdb_tables()", R),
    ("duckdb_settings", "SELECT * FROM duckdb_settings()", R),
    ("pg_catalog", "SELECT * FROM pg_catalog.pg_tables", R),
    ("pg_tables", "SELECT * FROM pg_tables", R),
    ("sqlite_master", "SELECT * FROM sqlite_master", R),
    ("pragma_fn", "SELECT * FROM pragma_table_info('labevents')", R),
    ("current_setting", "SELECT current_setting('memory_limit') AS s", R),
    ("set_config", "SELECT set_config('search_path', 'public', false) AS s", R),
    ("getenv", "SELECT getenv('HOME') AS h", R),
    ("version", "SELECT version() AS v", R),
    ("nextval", "SELECT nextval('s') AS v", R),
    ("query_to_xml", "SELECT query_to_xml('SELECT * FROM public._secret', true, false, '') AS x", R),
    ("ts_stat", "SELECT * FROM ts_stat('SELECT 1')", R),
    ("ts_stat_scalar", "SELECT ts_stat('SELECT 1') AS x", R),
    ("crosstab", "SELECT crosstab('SELECT 1') AS x", R),
    ("table_to_xml", "SELECT table_to_xml('public._secret', true, false, '') AS x", R),
    ("error_fn", "SELECT * FROM labevents WHERE error(value) IS NULL", R),
    ("cast_error_message", "SELECT * FROM labevents WHERE CAST(value AS INTEGER) = 1", B),
    ("cast_error_message2", "SELECT CAST(comments AS DATE) AS d FROM labevents", B),
    ("placeholder", "SELECT * FROM labevents WHERE subject_id = ?", R),
    ("python_variable", "SELECT * FROM ts", R),
    # schema-qualified base tables
    ("qualified_main", "SELECT * FROM main.labevents", R),
    ("qualified_src", "SELECT * FROM clinseek_src.main.labevents", R),
    ("qualified_catalog", "SELECT * FROM clinseek_src.labevents", R),
    ("qualified_public", "SELECT * FROM public.labevents", R),
    ("qualified_quoted", 'SELECT * FROM "main"."labevents"', R),
    ("qualified_in_subquery", "SELECT * FROM labevents WHERE subject_id IN (SELECT subject_id FROM main.patients)", R),
    ("qualified_in_exists", "SELECT 1 AS a WHERE EXISTS (SELECT 1 FROM clinseek_src.main._secret)", R),
    ("memory_catalog", "SELECT * FROM memory.main.x", R),
    # other patients through filters, joins, subqueries, UNION, LATERAL
    ("other_patient_filter", "SELECT * FROM labevents WHERE subject_id = 10000002", OK),
    ("other_patient_not_equal", "SELECT * FROM labevents WHERE subject_id <> 10000001", OK),
    ("tautology", "SELECT * FROM labevents WHERE 1 = 1 OR subject_id IS NULL ORDER BY labevent_id", OK),
    ("count_patients", "SELECT count(*) AS n FROM patients", OK),
    ("distinct_subjects", "SELECT DISTINCT subject_id FROM chartevents", OK),
    ("join_mismatch", "SELECT l.labevent_id, a.hadm_id FROM labevents l JOIN admissions a "
                      "ON a.subject_id <> l.subject_id ORDER BY 1, 2", OK),
    ("cross_join_patients", "SELECT p.subject_id, a.hadm_id FROM patients p CROSS JOIN admissions a ORDER BY 2", OK),
    ("dictionary_left_join", "SELECT d.itemid, d.label, l.labevent_id FROM d_labitems d "
                             "LEFT JOIN labevents l USING (itemid) ORDER BY 1, 3", OK),
    ("in_subquery", "SELECT labevent_id FROM labevents WHERE subject_id IN (SELECT subject_id FROM admissions) "
                    "ORDER BY 1", OK),
    ("scalar_subquery", "SELECT (SELECT max(valuenum) FROM labevents) AS m", OK),
    ("correlated", "SELECT a.hadm_id, (SELECT count(*) FROM labevents l WHERE l.hadm_id = a.hadm_id) AS n "
                   "FROM admissions a ORDER BY 1", OK),
    ("union_hidden", "SELECT subject_id FROM labevents UNION SELECT subject_id FROM _secret", R),
    ("union_tables", "SELECT subject_id, hadm_id FROM labevents UNION SELECT subject_id, hadm_id FROM admissions "
                     "ORDER BY 2", OK),
    ("union_all_hidden_cte", "WITH x AS (SELECT 1 AS a) SELECT a FROM x UNION ALL SELECT subject_id FROM cxr_labels", R),
    ("except", "SELECT hadm_id FROM admissions EXCEPT SELECT hadm_id FROM diagnoses_icd", OK),
    ("intersect", "SELECT hadm_id FROM admissions INTERSECT SELECT hadm_id FROM labevents ORDER BY 1", OK),
    ("lateral", "SELECT a.hadm_id, x.labevent_id FROM admissions a, LATERAL (SELECT labevent_id FROM labevents l "
                "WHERE l.hadm_id = a.hadm_id) x ORDER BY 1, 2", OK),
    ("lateral_table_fn", "SELECT * FROM admissions a, LATERAL read_csv('/etc/passwd') x", R),
    ("window", "SELECT labevent_id, avg(valuenum) OVER (ORDER BY charttime) AS a FROM labevents ORDER BY 1", OK),
    ("cte_shadows_table", "WITH labevents AS (SELECT * FROM _secret) SELECT * FROM labevents", R),
    ("cte_shadows_table_nested", "SELECT * FROM (WITH admissions AS (SELECT 1 AS a) SELECT * FROM admissions) t", R),
    ("cte_name_of_hidden", "SELECT * FROM (WITH cxr_labels AS (SELECT 1 AS a) SELECT * FROM cxr_labels) t, "
                           "cxr_labels", R),
    ("cte_name_of_hidden2", "WITH _secret AS (SELECT 1 AS a) SELECT * FROM (SELECT * FROM _secret) t", R),
    ("cte_ok", "WITH x AS (SELECT itemid, count(*) AS n FROM labevents GROUP BY itemid) "
               "SELECT d.label, x.n FROM x JOIN d_labitems d USING (itemid) ORDER BY 1", OK),
    ("derived_alias_is_table", "SELECT * FROM (SELECT labevent_id FROM labevents) AS labevents ORDER BY 1", OK),
    ("values", "SELECT * FROM (VALUES (1), (2)) AS v(x) ORDER BY 1", OK),
    # future rows and future columns
    ("future_filter", "SELECT * FROM labevents WHERE charttime > TIMESTAMP '2180-05-06 12:00:00'", OK),
    ("max_times", "SELECT max(charttime) AS c, max(storetime) AS s FROM labevents", OK),
    ("all_admissions", "SELECT * FROM admissions ORDER BY admittime", OK),
    ("open_stay", "SELECT hadm_id FROM admissions WHERE dischtime IS NULL", OK),
    ("discharge_location", "SELECT discharge_location, hospital_expire_flag FROM admissions ORDER BY 1", OK),
    ("los", "SELECT los, outtime, last_careunit FROM icustays", OK),
    ("dod", "SELECT dod FROM patients", OK),
    ("transfers", "SELECT * FROM transfers ORDER BY intime", OK),
    ("notes", "SELECT note_id, text FROM discharge UNION ALL SELECT note_id, text FROM radiology ORDER BY 1", OK),
    ("micro", "SELECT * FROM microbiologyevents ORDER BY microevent_id", OK),
    ("prescriptions", "SELECT drug, starttime, stoptime FROM prescriptions", OK),
    ("diagnoses", "SELECT * FROM diagnoses_icd ORDER BY hadm_id", OK),
    ("procedures", "SELECT * FROM procedures_icd", OK),
    ("chart", "SELECT * FROM chartevents", OK),
    ("omr", "SELECT * FROM omr", OK),
    ("cxr", "SELECT * FROM cxr_metadata", OK),
    ("cxr_path", "SELECT path FROM cxr_metadata", B),
    ("cxr_labels", "SELECT * FROM cxr_labels", R),
    ("future_admission_id", "SELECT * FROM labevents WHERE hadm_id = 20000013", OK),
    ("time_travel", "SELECT * FROM labevents AT (VERSION => 1)", B),
    ("star_exclude", "SELECT * EXCLUDE (comments) FROM labevents ORDER BY labevent_id", DUCK),
    ("columns_regex", "SELECT COLUMNS('.*time') FROM labevents ORDER BY 1", DUCK),
    ("from_first", "FROM labevents SELECT labevent_id ORDER BY 1", DUCK),
    ("to_json", "SELECT to_json(l) AS j FROM labevents l ORDER BY 1", DUCK),
    # blow-ups and huge values (bounded by the row cap, the character cap and the time limit)
    ("recursive_infinite", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r", B),
    ("recursive_large", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) "
                        "SELECT max(n) FROM r", B),
    ("recursive_rows", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5000) "
                       "SELECT n FROM r", OK),
    ("cross_join_blowup", "SELECT count(*) AS n FROM chartevents a, labevents b, labevents c, labevents d, "
                          "labevents e, labevents f, labevents g, labevents h, labevents i, labevents j", OK),
    ("cross_join_rows", "SELECT a.labevent_id, b.labevent_id AS b FROM labevents a, labevents b, labevents c, "
                        "labevents d ORDER BY 1, 2", OK),
    ("huge_string", "SELECT repeat('x', 10000000) AS s", B),
    ("huge_agg", "SELECT string_agg(text, ' ') AS s FROM (SELECT repeat(text, 10000) AS text FROM radiology) t", B),
    ("many_columns", "SELECT " + ", ".join(f"{i} AS c{i}" for i in range(400)), B),
]


def test_corpus_is_large_and_named_uniquely():
    assert len(CORPUS) >= 80
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    return make_fixture_db(tmp_path_factory.mktemp("corpus") / "fixture.duckdb")


def _open(database: str, timeout_s: float = 2.0, **kw) -> EhrToolset:
    ts = EhrToolset(EhrConfig(database=database, max_rows=25, max_chars=MAX_CHARS, sql_timeout_s=timeout_s, **kw),
                    None)
    ts.open()
    return ts


@pytest.fixture(scope="module")
def duck(fixture_db):
    ts = _open(str(fixture_db))
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def pg(fixture_db):
    dsn = os.environ.get("CLINSEEK_TEST_PG_DSN")
    if not dsn:
        pytest.skip("CLINSEEK_TEST_PG_DSN is not set (source .ci/start_postgres.sh)")
    from clinseek_ehr.pgload import load_duckdb_into_postgres

    load_duckdb_into_postgres(fixture_db, dsn, schema="ehr_corpus")
    ts = _open(dsn, pg_schema="ehr_corpus", pool_size=2)
    yield ts
    ts.close()


def run(ts: EhrToolset, query: str) -> tuple[str, str]:
    e = Episode(binding=Binding(qid="q", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=None)
    try:
        return "ok", ts.ehr_sql(e, query)
    except ToolError as exc:
        return ("refused" if str(exc).startswith("query refused") else "error"), str(exc)


def check(kind: str, status: str, text: str, name: str, leaked=leaks, min_reason: int = 30) -> None:
    assert not leaked(text), f"{name}: leaked {leaked(text)}:\n{text[:500]}"
    assert len(text) <= MAX_CHARS, f"{name}: {len(text)} characters"
    if kind == R:
        assert status == "refused", f"{name}: expected a refusal, got {status}: {text[:300]}"
        assert len(text) > min_reason, f"{name}: the reason is too short to act on: {text}"
    elif kind in (OK, DUCK):
        assert status == "ok", f"{name}: expected rows, got {status}: {text[:300]}"
    else:
        assert status in ("ok", "refused", "error")


@pytest.mark.parametrize("name,query,kind", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_duckdb(duck, name, query, kind):
    status, text = run(duck, query)
    check(kind, status, text, name)


def _rows(text: str) -> list[str]:
    return sorted(text.splitlines()[1:])


@pytest.mark.postgres
@pytest.mark.parametrize("name,query,kind", CORPUS, ids=[c[0] for c in CORPUS])
def test_corpus_postgres_same_rows(duck, pg, name, query, kind):
    status, text = run(pg, query)
    if kind == DUCK:
        assert not leaks(text) and len(text) <= MAX_CHARS
        return
    check(kind, status, text, name)
    if kind == OK:
        _, expected = run(duck, query)
        assert _rows(text) == _rows(expected), f"{name}: DuckDB and PostgreSQL disagree"


TOOL_CALLS = [
    ("ehr_tables", {}),
    ("ehr_describe", {"table": "admissions"}),
    ("ehr_describe", {"table": "labevents"}),
    ("ehr_search", {"keyword": "pneumonia"}),
    ("ehr_search", {"keyword": "vanco", "table": "prescriptions"}),
    ("ehr_timeline", {}),
    ("ehr_timeline", {"start": "2179-01-01", "end": "2179-12-31"}),
    ("ehr_latest", {"table": "labevents", "limit": 2}),
    ("ehr_latest", {"table": "microbiologyevents"}),
    ("ehr_lookup", {"term": "creatinine"}),
    ("ehr_lookup", {"term": "428.0"}),
]


@pytest.mark.postgres
@pytest.mark.parametrize("tool,args", TOOL_CALLS, ids=[f"{t}-{i}" for i, (t, _) in enumerate(TOOL_CALLS)])
def test_every_tool_answers_the_same_on_postgres(duck, pg, tool, args):
    e = Episode(binding=Binding(qid="q", subject_id=PATIENT, hadm_id=None, prediction_time=CUTOFF), task=None)
    ours = getattr(pg, tool)(e, **args)
    assert not leaks(ours)
    assert ours == getattr(duck, tool)(e, **args)


@pytest.mark.postgres
@pytest.mark.parametrize("sql", [
    "SELECT * FROM labevents",                                   # search_path points at no schema
    "CREATE TABLE ehr_corpus.x (a integer)",                     # read-only transactions
    "INSERT INTO ehr_corpus.labevents (labevent_id) VALUES (1)",
    "SET default_transaction_read_only = off; INSERT INTO ehr_corpus.labevents (labevent_id) VALUES (1)",
])
def test_postgres_connection_holds_without_the_guard(pg, sql):
    with pytest.raises(ToolError):
        pg.backend.run(sql, 10, 2.0)
