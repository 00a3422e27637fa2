"""The ehr toolset on a small MIMIC-shaped fixture: profiles, scoping and masking, the eight tools, bounds."""
from __future__ import annotations

import re
import threading
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from clinseek.errors import ToolError, UserError
from clinseek.toolsets import Binding, Episode, validate_arguments
from clinseek_ehr.profile import load_profile, parse_profile
from clinseek_ehr.testing import CUTOFF, OTHER, PATIENT, make_fixture_db
from clinseek_ehr.toolset import EhrConfig, EhrToolset, resolve_database

TS_RE = re.compile(r"\b(\d{4}-\d{2}-\d{2})(?: (\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?)?")


def leaks(text: str, cutoff: datetime = CUTOFF) -> list[str]:
    """Markers of future or other-patient data in a tool's output."""
    found = [m for m in ("FUTURE", "OTHER", "files/p") if m in text]
    found += [pid for pid in (str(OTHER), str(OTHER + 1), str(OTHER + 2)) if pid in text]
    for day, hm in TS_RE.findall(text):
        when = datetime.fromisoformat(f"{day} {hm or '00:00'}")
        if (hm and when > cutoff) or (not hm and when.date() > cutoff.date()):
            found.append(f"{day} {hm}".strip())
    return found


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return make_fixture_db(tmp_path_factory.mktemp("ehr") / "fixture.duckdb")


@pytest.fixture(scope="module")
def toolset(db):
    ts = EhrToolset(EhrConfig(database=str(db), sql_timeout_s=2.0, max_rows=20), None)
    ts.open()
    yield ts
    ts.close()


def episode(pid=PATIENT, cutoff=CUTOFF) -> Episode:
    return Episode(binding=Binding(qid="q1", subject_id=pid, hadm_id=None, prediction_time=cutoff), task=None)


@pytest.fixture
def ep(toolset):
    e = episode()
    toolset.bind(e)
    yield e
    toolset.unbind(e)


# Profiles -------------------------------------------------------------------------------------------------------
def test_builtin_profiles_load_and_declare_future_columns():
    p = load_profile("mimic_iv")
    assert {"labevents", "admissions", "diagnoses_icd", "cxr_metadata"} <= set(p.patient_tables)
    assert {"d_labitems", "d_items", "d_icd_diagnoses", "d_icd_procedures"} <= set(p.dictionaries)
    adm = p.tables["admissions"]
    assert {"dischtime", "deathtime", "discharge_location", "hospital_expire_flag"} <= set(adm.masked)
    assert {"outtime", "los"} <= set(p.tables["icustays"].masked)
    assert "dod" in p.tables["patients"].masked
    assert "path" not in p.tables["cxr_metadata"].columns
    omop = load_profile("omop_cdm")
    assert "person" in omop.patient_tables and "concept" in omop.dictionaries


def test_profile_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_profile("no_such_profile")
    with pytest.raises(UserError, match="patient_key"):
        parse_profile({"tables": {"x": {"columns": {"a": ""}}}})
    with pytest.raises(UserError, match="masked column"):
        parse_profile({"patient_key": "a", "tables": {"x": {"columns": {"a": ""}, "masked": {"b": "b"}}}})
    with pytest.raises(UserError, match="unknown key"):
        parse_profile({"patient_key": "a", "tables": {"x": {"columns": {"a": ""}, "mask": {}}}})
    f = tmp_path / "p.yaml"
    f.write_text("patient_key: subject_id\ntables:\n  labevents:\n    known_at: [charttime]\n"
                 "    columns: {subject_id: id, charttime: t, valuenum: v}\n")
    assert load_profile("p.yaml", base_dir=tmp_path).tables["labevents"].known_at == ("charttime",)


def test_profile_rule_naming_a_missing_column_fails_at_open(db, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("patient_key: subject_id\ntables:\n  labevents:\n    known_at: [releasetime]\n"
                 "    columns: {subject_id: id, charttime: t}\n")
    with pytest.raises(UserError, match="does not fit the database: labevents"):
        EhrToolset(EhrConfig(database=str(db), profile=str(f)), None).open()


def test_custom_profile_file_hides_unlisted_columns(db, tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("patient_key: subject_id\ntables:\n  labevents:\n    known_at: [charttime, storetime]\n"
                 "    columns: {subject_id: id, charttime: t, valuenum: v}\n")
    warnings = []

    class Ctx:
        recipe_dir = tmp_path
        cache_dir = tmp_path
        warn = staticmethod(warnings.append)

    ts = EhrToolset(EhrConfig(database=str(db), profile="p.yaml"), Ctx())
    ts.open()
    try:
        e = episode()
        out = ts.ehr_sql(e, "SELECT * FROM labevents ORDER BY charttime")
        assert out.splitlines()[0] == "subject_id|charttime|valuenum"
        with pytest.raises(ToolError, match="comments"):
            ts.ehr_sql(e, "SELECT comments FROM labevents")
        with pytest.raises(ToolError, match="table admissions is not available"):
            ts.ehr_sql(e, "SELECT * FROM admissions")
        assert any("comments" in w and "hidden" in w for w in warnings)
    finally:
        ts.close()


# Scoping and masking ---------------------------------------------------------------------------------------------
def test_rows_are_the_bound_patients_known_by_the_cutoff(toolset, ep):
    out = toolset.ehr_sql(ep, "SELECT labevent_id, charttime, storetime FROM labevents ORDER BY labevent_id")
    ids = [line.split("|")[0] for line in out.splitlines()[1:-1]]
    # 1002 was collected before the cutoff but released after it; 1004 is later; other patients never show.
    assert ids == ["1001", "1003", "1005"]
    assert not leaks(out)


def test_strict_cutoff_excludes_rows_at_the_cutoff(db):
    ts = EhrToolset(EhrConfig(database=str(db), cutoff="strict"), None)
    ts.open()
    try:
        out = ts.ehr_sql(episode(), "SELECT labevent_id FROM labevents ORDER BY 1")
        assert "1003" not in out and "1001" in out
    finally:
        ts.close()


def test_future_columns_are_masked_but_past_ones_shown(toolset, ep):
    out = toolset.ehr_sql(ep, "SELECT hadm_id, dischtime, discharge_location, hospital_expire_flag, deathtime "
                              "FROM admissions ORDER BY admittime")
    rows = [line.split("|") for line in out.splitlines()[1:-1]]
    assert rows[0] == ["20000011", "2179-01-05 12:00", "HOME", "0", ""]     # previous stay: all known
    assert rows[1] == ["20000012", "", "", "", ""]                          # current stay: outcome masked
    assert len(rows) == 2                                                   # the later admission is hidden
    icu = toolset.ehr_sql(ep, "SELECT outtime, los, last_careunit, first_careunit FROM icustays")
    assert icu.splitlines()[1] == "|||MICU"
    assert toolset.ehr_sql(ep, "SELECT dod FROM patients").splitlines()[1] == ""


def test_billing_codes_show_only_for_discharged_admissions(toolset, ep):
    out = toolset.ehr_sql(ep, "SELECT hadm_id, icd_code FROM diagnoses_icd")
    assert "J189" in out and "A419" not in out
    out = toolset.ehr_sql(ep, "SELECT icd_code FROM procedures_icd")
    assert "5A1955Z" in out and "0BH17EZ" not in out


def test_culture_shows_pending_until_stored(toolset, ep):
    out = toolset.ehr_sql(ep, "SELECT microevent_id, spec_type_desc, org_name, interpretation, storetime "
                              "FROM microbiologyevents ORDER BY microevent_id")
    lines = out.splitlines()
    assert lines[1] == "101|BLOOD CULTURE|||"                       # collected, result not yet stored
    assert lines[2].startswith("102|URINE|E. COLI PAST|")           # older culture with its result
    assert "103" not in out                                         # collected after the cutoff


def test_notes_date_only_rows_and_images(toolset, ep):
    notes = toolset.ehr_sql(ep, "SELECT note_id FROM discharge UNION ALL SELECT note_id FROM radiology")
    assert "10000001-DS-1" in notes and "10000001-RR-1" in notes
    assert "DS-2" not in notes and "RR-2" not in notes
    omr = toolset.ehr_sql(ep, "SELECT chartdate FROM omr")
    assert "2180-05-01" in omr and "2180-05-06" not in omr     # same-day date-only rows wait for midnight
    with pytest.raises(ToolError, match="path"):
        toolset.ehr_sql(ep, "SELECT path FROM cxr_metadata")
    assert "d11" in toolset.ehr_sql(ep, "SELECT dicom_id FROM cxr_metadata")


def test_other_patient_sees_their_own_rows(toolset):
    e = episode(pid=OTHER)
    out = toolset.ehr_sql(e, "SELECT DISTINCT subject_id FROM labevents")
    assert out.splitlines()[1] == str(OTHER) and str(PATIENT) not in out


def test_a_later_cutoff_widens_the_view(toolset):
    e = episode(cutoff=CUTOFF + timedelta(days=10))
    out = toolset.ehr_sql(e, "SELECT count(*) FROM labevents")
    assert out.splitlines()[1] == "5"
    assert "2180-05-09" in toolset.ehr_sql(e, "SELECT dischtime FROM admissions WHERE hadm_id = 20000012")


def test_an_aware_cutoff_cannot_be_bound():
    from datetime import timezone

    with pytest.raises(ValueError, match="naive"):
        episode(cutoff=datetime(2180, 5, 6, 14, 0, tzinfo=timezone(timedelta(hours=2))))


def test_concurrent_episodes_do_not_share_scope(toolset):
    results: dict[int, set[str]] = {}
    errors = []

    def work(pid):
        try:
            e = episode(pid=pid)
            toolset.bind(e)
            seen = set()
            for _ in range(15):
                out = toolset.ehr_sql(e, "SELECT DISTINCT subject_id FROM labevents")
                seen |= set(out.splitlines()[1:-1])
            results[pid] = seen
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(pid,)) for pid in (PATIENT, OTHER, OTHER + 1, OTHER + 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert results == {pid: {str(pid)} for pid in (PATIENT, OTHER, OTHER + 1, OTHER + 2)}


# The tools ------------------------------------------------------------------------------------------------------
def test_tool_schemas_take_no_patient_or_time(toolset):
    specs = {s.name: s for s in EhrToolset.tool_specs()}
    assert set(specs) == {"ehr_tables", "ehr_describe", "ehr_sql", "ehr_search", "ehr_timeline", "ehr_latest",
                          "ehr_lookup", "ehr_candidates"}
    for spec in specs.values():
        props = set(spec.parameters["properties"])
        assert not props & {"subject_id", "patient", "patient_id", "cutoff", "prediction_time", "hadm_id"}
    assert "DuckDB" in specs["ehr_sql"].description
    with pytest.raises(ToolError, match="unknown argument"):
        validate_arguments(specs["ehr_sql"], {"query": "SELECT 1", "subject_id": 10000002})


def test_ehr_tables_counts_and_hides_internal_tables(toolset, ep):
    out = toolset.ehr_tables(ep)
    assert "labevents|3|" in out and "admissions|2|" in out and "d_labitems|3|" in out
    assert "cxr_labels" not in out and "_secret" not in out
    assert not leaks(out)


def test_ehr_describe_lists_columns_types_examples(toolset, ep):
    out = toolset.ehr_describe(ep, "admissions")
    assert "dischtime|TIMESTAMP|" in out and "NULL until known" in out
    assert "EW EMER." in out and not leaks(out)
    with pytest.raises(ToolError, match="available tables"):
        toolset.ehr_describe(ep, "cxr_labels")


def test_ehr_search_is_literal_and_case_insensitive(toolset, ep):
    out = toolset.ehr_search(ep, "PNEUMONIA")
    assert "radiology|" in out and "discharge|" in out and "J189" in out
    assert not leaks(out)
    assert "(no rows)" in toolset.ehr_search(ep, "pneum.*a")            # not a regex
    assert "(no rows)" in toolset.ehr_search(ep, "1%_")                 # LIKE wildcards are literal too
    assert "Vancomycin" in toolset.ehr_search(ep, "vanco", table="prescriptions")
    assert "(no rows)" in toolset.ehr_search(ep, "meropenem")          # ordered after the cutoff
    with pytest.raises(ToolError):
        toolset.ehr_search(ep, "x")


def test_ehr_search_reports_every_matching_column_of_a_row(toolset, ep):
    out = toolset.ehr_search(ep, "in", table="prescriptions").splitlines()
    assert out[1:3] == ["prescriptions|2180-05-05 14:00||drug|Vancomycin PAST",
                        "prescriptions|2180-05-05 14:00||drug_type|MAIN"]


def test_search_keywords_and_days_are_quoted_values_not_sql(toolset, ep):
    from clinseek_ehr.guard import prepare_trusted

    assert "(no rows)" in toolset.ehr_search(ep, "x' OR 1=1 --")           # quoted, not spliced into the SQL
    assert "(no rows)" in toolset.ehr_search(ep, "__clinseek_keyword__")   # the placeholder itself is just text
    toolset.ehr_search(ep, "pneumonia")
    before = prepare_trusted.cache_info()
    toolset.ehr_search(ep, "vancomycin")   # a new keyword is not a new SQL text: nothing parsed again
    toolset.ehr_timeline(ep, start="2179-01-01")
    toolset.ehr_timeline(ep, start="2179-01-02")
    after = prepare_trusted.cache_info()
    assert after.misses - before.misses <= 1 and after.hits > before.hits
    with pytest.raises(ValueError, match="trusted"):
        toolset.run_sql(ep, "SELECT 1 AS x", literals={"a": "b"})


def test_ehr_timeline_counts_per_day_up_to_cutoff(toolset, ep):
    out = toolset.ehr_timeline(ep)
    lines = out.splitlines()
    assert lines[0] == "day|rows per table"
    assert lines[1].startswith("2180-05-06|") and "labevents 1" in lines[1]
    assert not leaks(out)
    only = toolset.ehr_timeline(ep, start="2179-01-01", end="2179-12-31")
    assert "2180" not in only and "2179-01-02" in only
    with pytest.raises(ToolError, match="date"):
        toolset.ehr_timeline(ep, start="yesterday")


@pytest.mark.parametrize("end", ["9999-12-31", "2999-01-01"])
def test_ehr_timeline_end_far_in_the_future_means_the_prediction_day(toolset, ep, end):
    assert toolset.ehr_timeline(ep, end=end) == toolset.ehr_timeline(ep)


def test_ehr_timeline_start_after_end_says_how_to_fix_it(toolset, ep):
    with pytest.raises(ToolError, match="start 9999-12-31 is after end 2180-05-06.*on or before"):
        toolset.ehr_timeline(ep, start="9999-12-31", end="9999-12-31")


def test_ehr_latest_newest_first_and_bounded(toolset, ep):
    out = toolset.ehr_latest(ep, "labevents", limit=2)
    lines = out.splitlines()
    assert lines[1].startswith("1003|") and lines[2].startswith("1001|")
    assert "1 more rows not shown" in out
    with pytest.raises(ToolError, match="available tables"):
        toolset.ehr_latest(ep, "d_labitems")


def test_ehr_lookup_by_code_and_words(toolset, ep):
    assert "d_labitems|50912|Creatinine" in toolset.ehr_lookup(ep, "creatinine")
    assert "d_icd_diagnoses|4280|" in toolset.ehr_lookup(ep, "428.0")
    assert "Congestive heart failure" in toolset.ehr_lookup(ep, "heart failure")
    assert "(no rows)" in toolset.ehr_lookup(ep, "zzzz")


def test_rows_and_characters_are_capped_with_a_note(db):
    ts = EhrToolset(EhrConfig(database=str(db), max_rows=3, max_chars=600), None)
    ts.open()
    try:
        e = episode()
        out = ts.ehr_sql(e, "SELECT x FROM (SELECT unnest(range(1000)) AS x) AS t")
        assert out.splitlines()[1:4] == ["0", "1", "2"]
        assert "997 more rows not shown (use WHERE/LIMIT or aggregate)" in out
        big = ts.ehr_sql(e, "SELECT repeat('ab', 50000) AS s FROM labevents")
        assert len(big) <= 600 and "more rows not shown" in big
    finally:
        ts.close()


def test_long_cells_are_cut_and_say_so(toolset, ep):
    out = toolset.ehr_sql(ep, "SELECT repeat('y', 5000) AS s")
    assert "…[+3000 chars]" in out


def test_statement_time_limit(db):
    ts = EhrToolset(EhrConfig(database=str(db), sql_timeout_s=0.3), None)
    ts.open()
    try:
        with pytest.raises(ToolError, match="time limit"):
            ts.ehr_sql(episode(), "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                                  "SELECT count(*) FROM r")
        assert "1" in ts.ehr_sql(episode(), "SELECT 1 AS one")   # the connection is usable afterwards
    finally:
        ts.close()


def test_database_errors_read_cleanly(toolset, ep):
    with pytest.raises(ToolError) as err:
        toolset.ehr_sql(ep, "SELECT nosuchcolumn FROM labevents")
    msg = str(err.value)
    assert "nosuchcolumn" in msg and "clinseek_src" not in msg and "10000001" not in msg


def test_data_errors_do_not_quote_values(toolset, ep):
    with pytest.raises(ToolError) as err:
        toolset.ehr_sql(ep, "SELECT CAST(value AS INTEGER) AS v FROM labevents")
    msg = str(err.value)
    assert "Conversion Error" in msg and "TRY_CAST" in msg
    assert "PAST" not in msg and "1.1" not in msg
    assert "4" in toolset.ehr_sql(ep, "SELECT max(TRY_CAST(valuenum AS INTEGER)) AS v FROM labevents")


def test_config_and_database_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        EhrToolset(EhrConfig(database=str(tmp_path / "missing.duckdb")), None).open()
    bad = tmp_path / "bad.duckdb"
    bad.write_text("not a database")
    with pytest.raises(UserError, match="cannot open"):
        EhrToolset(EhrConfig(database=str(bad)), None).open()
    with pytest.raises(Exception):
        EhrConfig(database="x", surprise=1)
    with pytest.raises(UserError, match="demo"):
        resolve_database("demo:patients=lots")


def test_manifest_records_profile_and_tables(toolset):
    m = toolset.manifest()
    assert m["profile"] == "mimic_iv" and m["backend"] == "duckdb" and "labevents" in m["tables"]
    assert "emar" in m["skipped_tables"]


def test_unbound_episode_is_bound_on_first_call(toolset):
    e = episode()
    assert "labevents" in toolset.ehr_tables(e)
    assert replace(e.binding) == e.binding


def test_two_toolsets_on_one_episode_keep_their_own_scope(db, toolset):
    strict = EhrToolset(EhrConfig(database=str(db), cutoff="strict"), None)
    strict.open()
    try:
        e = episode()
        assert "1003" in toolset.ehr_sql(e, "SELECT labevent_id FROM labevents")
        assert "1003" not in strict.ehr_sql(e, "SELECT labevent_id FROM labevents")
        assert "1003" in toolset.ehr_sql(e, "SELECT labevent_id FROM labevents")
    finally:
        strict.close()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",                    # external access is disabled
    "SELECT * FROM labevents",                                  # unqualified names reach no base table
    "SELECT * FROM _secret",
    "CREATE TABLE clinseek_src.main.x (a INTEGER)",             # the file is attached read-only
    "INSERT INTO clinseek_src.main.labevents (labevent_id) VALUES (1)",
    "SET enable_external_access = true",                        # the configuration is locked
    "SET lock_configuration = false",
    "ATTACH '/tmp/clinseek-other.duckdb' AS other",
])
def test_duckdb_connection_holds_without_the_guard(toolset, sql):
    """Defence in depth: statements sent straight to the connection, past the guard, still fail."""
    with pytest.raises(ToolError):
        toolset.backend.run(sql, 10, 2.0)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SET enable_external_access = true",
    "ATTACH '/tmp/clinseek-other.duckdb' AS other",
    "CREATE TABLE clinseek_src.main.x (a INTEGER)",
])
def test_episode_connection_holds_without_the_guard(toolset, ep, sql):
    """The episode's own snapshot connection is as locked down as the shared one."""
    toolset.ehr_sql(ep, "SELECT count(*) AS n FROM labevents")
    session = ep.state[toolset._session_key]
    with pytest.raises(ToolError):
        toolset.backend.run(sql, 10, 2.0, session=session)


# Per-episode snapshots (DuckDB) ------------------------------------------------------------------------------------
SNAPSHOT_QUERIES = [
    "SELECT * FROM labevents ORDER BY labevent_id",
    "SELECT hadm_id, dischtime, discharge_location, hospital_expire_flag FROM admissions ORDER BY hadm_id",
    "SELECT l.itemid, d.label, count(*) AS n FROM labevents l JOIN d_labitems d USING (itemid) GROUP BY ALL "
    "ORDER BY ALL",
    "SELECT a.hadm_id, count(l.labevent_id) AS n FROM admissions a LEFT JOIN labevents l USING (hadm_id) "
    "GROUP BY 1 ORDER BY 1",
]


@pytest.mark.parametrize("pid", [PATIENT, OTHER])
def test_snapshot_shows_exactly_what_direct_scoping_shows(db, pid):
    direct = EhrToolset(EhrConfig(database=str(db), snapshot=False), None)
    snap = EhrToolset(EhrConfig(database=str(db), snapshot=True), None)
    direct.open()
    snap.open()
    try:
        e1, e2 = episode(pid=pid), episode(pid=pid)
        for sql in SNAPSHOT_QUERIES:
            assert snap.ehr_sql(e1, sql) == direct.ehr_sql(e2, sql)
        for tool, kwargs in [("ehr_tables", {}), ("ehr_timeline", {}), ("ehr_search", {"keyword": "past"}),
                             ("ehr_latest", {"table": "labevents", "limit": 2}),
                             ("ehr_describe", {"table": "admissions"})]:
            assert getattr(snap, tool)(e1, **kwargs) == getattr(direct, tool)(e2, **kwargs)
        assert e1.state.get(snap._session_key) is not None and e2.state.get(direct._session_key) is None
    finally:
        snap.close()
        direct.close()


def test_snapshot_tables_belong_to_one_episode(toolset):
    mine, theirs = episode(pid=PATIENT), episode(pid=OTHER)
    toolset.bind(mine)
    toolset.bind(theirs)
    try:
        toolset.ehr_sql(mine, "SELECT count(*) AS n FROM labevents")
        toolset.ehr_sql(theirs, "SELECT count(*) AS n FROM admissions")
        own = mine.state[toolset._session_key]
        other = theirs.state[toolset._session_key]
        peek = "SELECT DISTINCT subject_id FROM temp.main.labevents"
        assert toolset.backend.run(peek, 10, 2.0, session=own).rows == [(PATIENT,)]
        for session in (other, None):   # another episode's connection, and the shared one, cannot see it
            with pytest.raises(ToolError, match="does not exist"):
                toolset.backend.run(peek, 10, 2.0, session=session)
        cursor = own.cursor
        toolset.unbind(mine)
        assert toolset._session_key not in mine.state
        with pytest.raises(Exception):   # unbinding closed the connection and its temporary tables
            cursor.execute(peek)
    finally:
        toolset.unbind(mine)
        toolset.unbind(theirs)


def test_a_timed_out_query_resets_the_episode_snapshot(db):
    ts = EhrToolset(EhrConfig(database=str(db), sql_timeout_s=0.3), None)
    ts.open()
    try:
        e = episode()
        before = ts.ehr_sql(e, "SELECT labevent_id FROM labevents ORDER BY 1")
        first = e.state[ts._session_key].cursor
        with pytest.raises(ToolError, match="time limit"):
            ts.ehr_sql(e, "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) "
                          "SELECT count(*) FROM r, labevents")
        session = e.state[ts._session_key]
        assert session.cursor is not first and session.tables == set()
        assert ts.ehr_sql(e, "SELECT labevent_id FROM labevents ORDER BY 1") == before
    finally:
        ts.close()


def test_parallel_calls_of_one_turn_share_the_episode_connection_safely(toolset):
    e = episode()
    toolset.bind(e)
    want = toolset.ehr_sql(e, "SELECT labevent_id, valuenum FROM labevents ORDER BY 1")
    outs, errors = [], []

    def call():
        try:
            for _ in range(10):
                outs.append(toolset.ehr_sql(e, "SELECT labevent_id, valuenum FROM labevents ORDER BY 1"))
                toolset.ehr_latest(e, "admissions", 1)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    toolset.unbind(e)
    assert not errors and len(outs) == 40 and set(outs) == {want}


def test_a_table_that_cannot_be_copied_is_read_through_its_scoped_subquery(db, monkeypatch):
    ts = EhrToolset(EhrConfig(database=str(db)), None)
    direct = EhrToolset(EhrConfig(database=str(db), snapshot=False), None)
    ts.open()
    direct.open()
    try:
        real_run = ts.backend.run

        def run(sql, *args, **kwargs):   # the copy of labevents fails as an out-of-memory copy would
            if sql.startswith("CREATE TEMP TABLE labevents"):
                raise ToolError("query failed: Out of Memory Error: could not allocate block")
            return real_run(sql, *args, **kwargs)

        monkeypatch.setattr(ts.backend, "run", run)
        e, e2 = episode(), episode()
        sql = "SELECT a.hadm_id, count(l.labevent_id) AS n FROM admissions a LEFT JOIN labevents l USING (hadm_id) " \
              "GROUP BY 1 ORDER BY 1"
        assert ts.ehr_sql(e, sql) == direct.ehr_sql(e2, sql)
        session = e.state[ts._session_key]
        assert session.uncopied == {"labevents"} and session.tables == {"admissions"}
        assert ts.ehr_latest(e, "labevents", 2) == direct.ehr_latest(e2, "labevents", 2)
    finally:
        ts.close()
        direct.close()
