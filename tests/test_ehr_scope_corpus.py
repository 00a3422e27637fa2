"""The second adversarial corpus: name resolution and bounds. WITH/alias/temp-table shadowing, schema- and
catalogue-qualified names, system views and table functions, statistics and metadata functions, recursive CTEs and
cross joins, regex back-tracking, multi-statement and comment tricks, and inference through aggregates.

Every query goes through `ehr_sql`, the tool path the model uses, on DuckDB (episode snapshots on and off) and on
PostgreSQL. None may show another patient's row, a row after the cutoff, a future value or a hidden table, and the
database file's bytes are the same afterwards.
"""
from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime

import pytest

from clinseek_ehr.testing import CUTOFF, OTHER, make_fixture_db
from test_ehr_corpus import B, DUCK, MAX_CHARS, OK, R, _open, _rows, run
from test_ehr_corpus import check as check_corpus
from test_ehr_tools import leaks

# Catalogue and statistics relations of both databases. pg_stats holds most-common values and histograms of every
# column (other patients' ids, future times); pg_stat_activity other episodes' SQL text.
CATALOGUE = ["pg_stats", "pg_stat_activity", "pg_settings", "pg_shadow", "pg_user", "pg_roles", "pg_class",
             "pg_statistic", "pg_locks", "pg_database", "pg_proc", "pg_namespace", "pg_tables", "pg_views",
             "pg_stat_user_tables", "pg_stat_statements", "duckdb_tables", "duckdb_columns", "duckdb_settings",
             "duckdb_databases", "duckdb_views", "duckdb_constraints", "duckdb_indexes", "sqlite_master"]

_GENERATED: list[tuple[str, str, str]] = []
for _n in CATALOGUE:
    _GENERATED += [
        (f"bare_{_n}", f"SELECT * FROM {_n}", R),
        # The hole this corpus was written for: a WITH query named like a catalogue view reads the view itself.
        (f"cte_self_{_n}", f"WITH {_n} AS (SELECT * FROM {_n}) SELECT * FROM {_n}", R),
        (f"cte_inner_scope_{_n}", f"SELECT * FROM (WITH {_n} AS (SELECT 1 AS a) SELECT * FROM {_n}) q, {_n}", R),
        (f"qualified_{_n}", f"SELECT * FROM pg_catalog.{_n}", R),
    ]

HAND: list[tuple[str, str, str]] = [
    # WITH names: shadowing, scope and resolution
    ("cte_named_hidden", "WITH _secret AS (SELECT * FROM _secret) SELECT * FROM _secret", R),
    ("cte_named_hidden_unused", "WITH _secret AS (SELECT 1 AS a) SELECT * FROM _secret", R),
    ("cte_named_hidden_quoted", 'WITH "_SECRET" AS (SELECT 1 AS a) SELECT * FROM "_SECRET"', R),
    ("cte_named_table", "WITH labevents AS (SELECT 1 AS a) SELECT * FROM labevents", R),
    ("cte_named_table_upper", "WITH LabEvents AS (SELECT * FROM admissions) SELECT * FROM labevents", R),
    ("cte_named_dictionary", "WITH d_labitems AS (SELECT 1 AS a) SELECT * FROM d_labitems", R),
    ("cte_named_src", "WITH clinseek_src AS (SELECT 1 AS a) SELECT * FROM clinseek_src", R),
    ("cte_named_main", "WITH main AS (SELECT 1 AS a) SELECT * FROM main", R),
    ("cte_named_information_schema", "WITH information_schema AS (SELECT 1 AS a) SELECT * FROM information_schema", R),
    ("cte_named_system", "WITH system AS (SELECT 1 AS a) SELECT * FROM system", R),
    ("cte_named_temp", "WITH temp AS (SELECT 1 AS a) SELECT * FROM temp", R),
    ("cte_named_pragma", "WITH pragma_database_list AS (SELECT 1 AS a) SELECT * FROM pragma_database_list", R),
    ("cte_forward_reference", "WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a", R),
    ("cte_forward_reference_hidden", "WITH a AS (SELECT * FROM _secret), b AS (SELECT 1 AS x) SELECT * FROM a", R),
    ("cte_duplicate_name", "WITH a AS (SELECT 1 AS x), a AS (SELECT 2 AS x) SELECT * FROM a", B),
    ("cte_shadows_outer_cte", "WITH a AS (SELECT 1 AS x) SELECT * FROM (WITH a AS (SELECT 2 AS x) SELECT * FROM a) q", R),
    ("cte_sibling_scope", "SELECT * FROM (WITH a AS (SELECT 1 AS x) SELECT * FROM a) p, (SELECT * FROM a) q", R),
    ("cte_union_branch", "SELECT x FROM (WITH a AS (SELECT 1 AS x) SELECT x FROM a) p UNION ALL SELECT x FROM a", R),
    ("cte_exists_scope", "SELECT 1 AS o WHERE EXISTS (WITH a AS (SELECT 1 AS x) SELECT * FROM a) "
                         "AND EXISTS (SELECT * FROM a)", R),
    ("cte_scalar_scope", "SELECT (WITH a AS (SELECT 1 AS x) SELECT max(x) FROM a) AS m, (SELECT max(x) FROM a) AS n", R),
    ("cte_recursive_named_catalogue",
     "WITH RECURSIVE duckdb_tables(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM duckdb_tables WHERE n < 3) "
     "SELECT * FROM duckdb_tables", R),
    ("cte_ok_plain", "WITH labs AS (SELECT itemid, valuenum FROM labevents) SELECT itemid, valuenum FROM labs "
                     "ORDER BY 1, 2", OK),
    ("cte_ok_chain", "WITH a AS (SELECT hadm_id FROM admissions), b AS (SELECT hadm_id FROM a) "
                     "SELECT hadm_id FROM b ORDER BY 1", OK),
    ("cte_ok_nested", "SELECT n FROM (WITH c AS (SELECT count(*) AS n FROM labevents) SELECT n FROM c) q", OK),
    ("cte_ok_recursive", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
                         "SELECT n FROM r ORDER BY n", OK),
    ("cte_ok_materialized", "WITH labs AS MATERIALIZED (SELECT itemid FROM labevents) SELECT count(*) AS n FROM labs",
     DUCK),
    ("cte_ok_columns", "WITH labs(i, v) AS (SELECT itemid, valuenum FROM labevents) SELECT i, v FROM labs "
                       "ORDER BY 1, 2", OK),
    ("cte_ok_in_exists", "SELECT count(*) AS n FROM admissions WHERE EXISTS "
                         "(WITH l AS (SELECT hadm_id FROM labevents) SELECT 1 FROM l WHERE l.hadm_id = admissions.hadm_id)",
     OK),
    # aliases are names of rows, not of relations
    ("alias_named_catalogue", "SELECT pg_stats.itemid FROM labevents AS pg_stats ORDER BY 1", OK),
    ("alias_named_hidden", "SELECT _secret.itemid FROM labevents _secret ORDER BY 1", OK),
    ("derived_alias_named_hidden", "SELECT * FROM (SELECT 1 AS a) AS _secret", OK),
    ("alias_then_catalogue", "SELECT * FROM labevents pg_class, pg_class", R),
    ("alias_then_hidden", "SELECT * FROM labevents AS _secret JOIN _secret USING (subject_id)", R),
    ("derived_alias_table_name_then_table", "SELECT count(*) AS n FROM (SELECT 1 AS a) AS labevents, labevents", B),
    ("join_alias_shadow", "SELECT a.hadm_id FROM admissions a JOIN labevents a2 ON a.hadm_id = a2.hadm_id "
                          "ORDER BY 1 LIMIT 3", OK),
    # temp tables and other catalogs
    ("create_temp_shadow", "CREATE TEMP TABLE labevents AS SELECT * FROM clinseek_src.main.labevents", R),
    ("temp_qualified", "SELECT * FROM temp.labevents", R),
    ("temp_main_qualified", "SELECT * FROM temp.main.labevents", R),
    ("memory_qualified", "SELECT * FROM memory.main.labevents", R),
    ("src_qualified", "SELECT * FROM clinseek_src.main.labevents", R),
    ("src_schema_only", "SELECT * FROM clinseek_src.labevents", R),
    ("src_hidden", 'SELECT * FROM "clinseek_src"."main"."_secret"', R),
    ("main_qualified", "SELECT * FROM main.labevents", R),
    ("public_qualified", "SELECT * FROM public.labevents", R),
    ("pg_schema_qualified", "SELECT * FROM ehr_corpus.labevents", R),
    ("pg_schema_hidden", "SELECT * FROM ehr_corpus._secret", R),
    ("dotted_quoted_name", 'SELECT * FROM "clinseek_src.main.labevents"', R),
    ("info_schema_columns", "SELECT * FROM information_schema.columns", R),
    ("info_schema_quoted", 'SELECT * FROM "information_schema"."tables"', R),
    ("system_main", "SELECT * FROM system.main.duckdb_tables", R),
    ("table_qualified_by_table", "SELECT * FROM labevents.labevents", R),
    # table functions
    ("tf_duckdb_tables", "SELECT * FROM duckdb_tables()", R),
    ("tf_duckdb_memory", "SELECT * FROM duckdb_memory()", R),
    ("tf_duckdb_temporary_files", "SELECT * FROM duckdb_temporary_files()", R),
    ("tf_duckdb_extensions", "SELECT * FROM duckdb_extensions()", R),
    ("tf_pragma_storage_info", "SELECT * FROM pragma_storage_info('labevents')", R),
    ("tf_pragma_metadata", "SELECT * FROM pragma_metadata_info()", R),
    ("tf_generate_series", "SELECT * FROM generate_series(1, 10)", R),
    ("tf_range_in_join", "SELECT * FROM labevents, range(3)", R),
    ("tf_unnest_ok", "SELECT x FROM unnest([3, 1, 2]) AS t(x) ORDER BY x", DUCK),
    ("tf_values_ok", "SELECT a FROM (VALUES (2), (1)) AS v(a) ORDER BY a", OK),
    ("tf_pg_ls_dir", "SELECT * FROM pg_ls_dir('.')", R),
    ("tf_pg_read_file", "SELECT pg_read_file('/etc/passwd') AS f", R),
    ("tf_lateral_catalogue", "SELECT * FROM labevents, LATERAL (SELECT * FROM pg_stats) s", R),
    # statistics and metadata functions
    ("stats_fn", "SELECT stats(subject_id) AS s FROM labevents", R),
    ("stats_fn_time", "SELECT stats(charttime) AS s FROM labevents", R),
    ("stats_fn_in_where", "SELECT itemid FROM labevents WHERE stats(valuenum) IS NOT NULL", R),
    ("stats_fn_nested", "SELECT (SELECT stats(dischtime) FROM admissions LIMIT 1) AS s", R),
    ("pg_typeof", "SELECT pg_typeof(valuenum) AS t FROM labevents", R),
    ("current_query", "SELECT current_query() AS q", R),
    ("current_database", "SELECT current_database() AS d", R),
    ("current_schema", "SELECT current_schema() AS s", R),
    ("current_user", "SELECT current_user AS u", R),
    ("session_user", "SELECT session_user AS u", R),
    ("pg_backend_pid", "SELECT pg_backend_pid() AS p", R),
    ("inet_server_addr", "SELECT inet_server_addr() AS a", R),
    ("pg_relation_size", "SELECT pg_relation_size('ehr_corpus.labevents') AS s", R),
    ("pg_stat_get_live_tuples", "SELECT pg_stat_get_live_tuples(1) AS n", R),
    ("has_table_privilege", "SELECT has_table_privilege('ehr_corpus._secret', 'SELECT') AS p", R),
    ("to_regclass_cast", "SELECT CAST('ehr_corpus._secret' AS REGCLASS) AS r", R),
    ("oid_cast", "SELECT CAST(1 AS OID) AS r", R),
    ("getvariable", "SELECT getvariable('x') AS v", R),
    ("duckdb_functions_fn", "SELECT * FROM duckdb_functions()", R),
    ("which_secret", "SELECT which_secret('s3://x', 's3') AS s", R),
    ("hash_fn", "SELECT hash(subject_id) AS h FROM labevents", R),
    ("txid", "SELECT txid_current() AS t", R),
    ("now_fn", "SELECT now() AS t", R),
    ("current_timestamp", "SELECT CURRENT_TIMESTAMP AS t", R),
    ("typeof_ok", "SELECT typeof(valuenum) AS t FROM labevents LIMIT 1", DUCK),
    ("md5_ok", "SELECT md5(comments) AS m FROM labevents ORDER BY 1 LIMIT 2", OK),
    # denial of service: recursion, cross joins, builders
    ("recursive_with_catalogue", "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r, pg_stats) "
                                 "SELECT count(*) FROM r", R),
    ("recursive_doubling", "WITH RECURSIVE r(s) AS (SELECT 'x' UNION ALL SELECT s || s FROM r) "
                           "SELECT max(length(s)) FROM r", B),
    ("cross_join_8", "SELECT count(*) AS n FROM chartevents a, chartevents b, chartevents c, chartevents d, "
                     "chartevents e, chartevents f, chartevents g, chartevents h", B),
    ("cross_join_agg", "SELECT length(string_agg(a.text || b.text, '')) AS n FROM radiology a, radiology b, "
                       "radiology c, radiology d, radiology e", B),
    ("repeat_huge", "SELECT length(repeat('x', 2000000000)) AS n", R),
    ("repeat_float_count", "SELECT length(repeat('x', 2e9)) AS n", R),
    ("repeat_nested", "SELECT length(repeat(repeat('x', 10000), 10000)) AS n", R),
    ("repeat_computed_count", "SELECT length(repeat('x', CAST(subject_id AS BIGINT) * 1000)) AS n FROM patients", R),
    ("repeat_column_many", "SELECT length(repeat(text, 100000)) AS n FROM radiology", R),
    ("repeat_ok", "SELECT repeat('ab', 3) AS s", OK),
    ("lpad_huge", "SELECT length(lpad('x', 2000000000, 'y')) AS n", R),
    ("space_huge", "SELECT length(space(2000000000)) AS n", R),
    ("range_huge", "SELECT len(list_sort(range(1.5e8))) AS n", R),
    ("range_computed", "SELECT len(range(subject_id)) AS n FROM patients", R),
    ("generate_series_huge", "SELECT len(generate_series(1, 1000000000)) AS n", R),
    ("generate_series_time_huge", "SELECT len(generate_series(TIMESTAMP '2100-01-01', TIMESTAMP '2200-01-01', "
                                  "INTERVAL 1 SECOND)) AS n", R),
    ("generate_series_time_ok", "SELECT len(generate_series(TIMESTAMP '2180-05-01', TIMESTAMP '2180-05-06', "
                                "INTERVAL 1 DAY)) AS n", DUCK),
    ("range_ok", "SELECT len(range(100)) AS n", DUCK),
    ("list_resize", "SELECT len(list_resize([1], 1000000000)) AS n", R),
    ("array_fill", "SELECT array_fill(1, ARRAY[1000000000]) AS a", R),
    # regular expressions (RE2 on DuckDB; PostgreSQL's engine stops at the statement time limit)
    ("regex_backtrack", "SELECT regexp_matches(repeat('a', 5000) || 'b', '^(a+)+$') AS m", B),
    ("regex_backtrack_column", "SELECT count(*) AS n FROM radiology WHERE regexp_matches(text, '(.*a){20}')", B),
    ("regex_replace_nested", "SELECT length(regexp_replace(repeat('ab', 5000), '(a|b|ab)*c', 'x', 'g')) AS n", B),
    ("like_many_wildcards", "SELECT count(*) AS n FROM radiology WHERE text LIKE '%a%b%c%d%e%f%g%h%i%j%'", OK),
    ("similar_to", "SELECT count(*) AS n FROM radiology WHERE text SIMILAR TO '(a|b)*c'", B),
    # several statements and comments
    ("semicolon_then_catalogue", "SELECT 1 AS a; SELECT * FROM pg_stats", R),
    ("comment_then_catalogue", "SELECT 1 AS a -- x\n; SELECT * FROM pg_stat_activity", R),
    ("block_comment_hides_name", "SELECT * FROM /* labevents */ pg_stats", R),
    ("nested_block_comment", "SELECT 1 AS a /* /* */ ; SELECT * FROM _secret", R),
    ("comment_inside_name", "SELECT * FROM pg_/**/stats", R),
    ("string_with_semicolon", "SELECT 'a; DROP TABLE labevents' AS s", OK),
    ("dollar_quoted", "SELECT $$; SELECT * FROM _secret$$ AS s", B),
    ("escape_string", "SELECT E'\\'; SELECT * FROM _secret' AS s", B),
    ("double_semicolon", "SELECT 1 AS a;;", B),
    ("nul_byte", "SELECT 1 AS a\x00; SELECT * FROM _secret", R),
    ("bom_prefix", "\ufeffSELECT * FROM _secret", R),
    ("unicode_semicolon", "SELECT 1 AS a\uff1b SELECT * FROM _secret", R),
    ("mysql_exec_comment", "SELECT 1 AS a /*! ; SELECT * FROM _secret */", OK),
    ("newline_statement", "SELECT 1 AS a\n\nDROP TABLE labevents", R),
    ("hint_comment", "SELECT /*+ read(_secret) */ count(*) AS n FROM labevents", OK),
    # inference through aggregates: every aggregate sees the scoped rows only
    ("agg_count_distinct_patients", "SELECT count(DISTINCT subject_id) AS n FROM labevents", OK),
    ("agg_max_patient", "SELECT max(subject_id) AS a, min(subject_id) AS b FROM admissions", OK),
    ("agg_max_time", "SELECT max(charttime) AS t FROM labevents", OK),
    ("agg_max_storetime", "SELECT max(storetime) AS t FROM chartevents", OK),
    ("agg_group_by_patient", "SELECT subject_id, count(*) AS n FROM labevents GROUP BY subject_id", OK),
    ("agg_approx_distinct", "SELECT approx_count_distinct(hadm_id) AS n FROM admissions", DUCK),
    ("agg_percentile", "SELECT quantile_cont(valuenum, 0.99) AS q FROM labevents", DUCK),
    ("agg_window_rank", "SELECT itemid, rank() OVER (ORDER BY charttime DESC) AS r FROM labevents ORDER BY 2, 1", OK),
    ("agg_having", "SELECT hadm_id FROM labevents GROUP BY hadm_id HAVING count(*) > 0 ORDER BY 1", OK),
    ("agg_except", "SELECT hadm_id FROM admissions EXCEPT SELECT hadm_id FROM labevents ORDER BY 1", OK),
    ("agg_not_exists", "SELECT count(*) AS n FROM admissions a WHERE NOT EXISTS "
                       "(SELECT 1 FROM transfers t WHERE t.hadm_id = a.hadm_id)", OK),
    ("agg_correlated_max", "SELECT hadm_id, (SELECT max(charttime) FROM labevents l WHERE l.hadm_id = a.hadm_id) AS t "
                           "FROM admissions a ORDER BY 1", OK),
    ("agg_join_all", "SELECT count(*) AS n FROM admissions JOIN labevents USING (hadm_id) JOIN transfers USING (hadm_id)",
     OK),
    ("agg_dictionary_join", "SELECT d.label, count(*) AS n FROM labevents l JOIN d_labitems d USING (itemid) "
                            "GROUP BY 1 ORDER BY 1", OK),
    ("agg_order_limit", "SELECT charttime FROM labevents ORDER BY charttime DESC LIMIT 1", OK),
    ("agg_string_agg_notes", "SELECT string_agg(note_id, ',' ORDER BY note_id) AS ids FROM radiology", OK),
    ("agg_sum_future_flag", "SELECT sum(CASE WHEN charttime > TIMESTAMP '2180-05-06 12:00:00' THEN 1 ELSE 0 END) AS n "
                            "FROM labevents", OK),
    ("agg_count_secret_attempt", "SELECT (SELECT count(*) FROM _secret) AS n", R),
]

CORPUS = _GENERATED + HAND

_DT_REPR = re.compile(r"datetime\.(?:datetime|date)\((\d{4}), (\d{1,2}), (\d{1,2})(?:, (\d{1,2}), (\d{1,2}))?")


def leaked(text: str) -> list[str]:
    """Markers of data the episode may not see, in any rendering (plain text or Python reprs of structs)."""
    found = leaks(text) + re.findall(r"SECRET \w+", text) + ([str(OTHER)] if str(OTHER) in text else [])
    for y, mo, d, h, mi in _DT_REPR.findall(text):
        when = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0))
        if when > CUTOFF:
            found.append(when.isoformat())
    return found


def test_corpus_size_and_names():
    assert len(CORPUS) >= 150
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def fixture_db(tmp_path_factory):
    path = make_fixture_db(tmp_path_factory.mktemp("scope_corpus") / "fixture.duckdb")
    return path, _sha256(path)


@pytest.fixture(scope="module")
def duck_snapshot(fixture_db):
    ts = _open(str(fixture_db[0]), timeout_s=1.5, snapshot=True)
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def duck_shared(fixture_db):
    ts = _open(str(fixture_db[0]), timeout_s=1.5, snapshot=False)
    yield ts
    ts.close()


@pytest.fixture(scope="module")
def pg(fixture_db):
    dsn = os.environ.get("CLINSEEK_TEST_PG_DSN")
    if not dsn:
        pytest.skip("CLINSEEK_TEST_PG_DSN is not set (source .ci/start_postgres.sh)")
    from clinseek_ehr.pgload import load_duckdb_into_postgres

    load_duckdb_into_postgres(fixture_db[0], dsn, schema="ehr_corpus")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as con:
        con.execute("ANALYZE ehr_corpus.labevents")   # fill pg_stats, as a live server would have it
        con.execute("ANALYZE ehr_corpus.admissions")
    ts = _open(dsn, timeout_s=1.5, pg_schema="ehr_corpus", pool_size=2)
    yield ts
    ts.close()


def check(kind: str, status: str, text: str, name: str) -> None:
    check_corpus(kind, status, text, name, leaked=leaked, min_reason=40)


@pytest.mark.parametrize("name,query,kind", CORPUS, ids=[c[0] for c in CORPUS])
def test_scope_corpus_duckdb(duck_snapshot, duck_shared, name, query, kind):
    results = {}
    for label, ts in (("snapshot", duck_snapshot), ("shared", duck_shared)):
        status, text = run(ts, query)
        check(kind, status, text, f"{name} ({label})")
        results[label] = (status, text)
    if kind in (OK, DUCK):
        assert _rows(results["snapshot"][1]) == _rows(results["shared"][1]), f"{name}: snapshot and shared disagree"


@pytest.mark.postgres
@pytest.mark.parametrize("name,query,kind", CORPUS, ids=[c[0] for c in CORPUS])
def test_scope_corpus_postgres(duck_shared, pg, name, query, kind):
    status, text = run(pg, query)
    if kind == DUCK:
        assert not leaked(text) and len(text) <= MAX_CHARS
        return
    check(kind, status, text, name)
    if kind == OK:
        _, expected = run(duck_shared, query)
        assert _rows(text) == _rows(expected), f"{name}: DuckDB and PostgreSQL disagree"


def test_aggregates_see_only_the_scoped_rows(duck_shared):
    """Inference through aggregates: a count over a table equals the number of rows the episode sees."""
    for table in ("labevents", "admissions", "chartevents", "radiology"):
        _, rows = run(duck_shared, f"SELECT * FROM {table}")
        _, count = run(duck_shared, f"SELECT count(*) AS n FROM {table}")
        shown = int(rows.rsplit("(", 1)[1].split()[0]) if "rows)" in rows or "row)" in rows else 0
        assert int(count.splitlines()[1]) == shown, table


def test_database_file_is_unchanged(fixture_db, duck_snapshot, duck_shared):
    """Runs after the corpus above (pytest keeps file order): not a byte of the source changed."""
    path, before = fixture_db
    assert _sha256(path) == before
