"""The ehr toolset on the demo cohort (`database: demo:...`): the audit of its recipe prints zero violations."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from clinseek.cli import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    d = tmp_path_factory.mktemp("ehr-demo")
    (d / "recipe.yaml").write_text(
        "clinseek: 1\nname: ehr-demo\nhost: {provider: rules}\n"
        "tools:\n  - use: ehr\n    with: {database: 'demo:patients=40,seed=7'}\n"
        "tasks: {source: demo, with: {patients: 40, seed: 7}}\n")
    return d / "recipe.yaml"


def test_audit_of_the_demo_recipe_is_clean(recipe):
    result = CliRunner().invoke(cli, ["audit", str(recipe), "--limit", "60"])
    assert result.exit_code == 0, result.output
    assert "0 violations in 60 task(s)" in result.output
    for table in ("labevents", "admissions", "diagnoses_icd", "discharge", "cxr_metadata"):
        assert f"\n{table}|" in result.output
    assert "cxr_labels" not in result.output and "_latent" not in result.output


def test_demo_tools_answer_from_the_cohort(recipe):
    import json

    from clinseek_demo.demo import ensure_demo
    from clinseek.tasks import Task
    from clinseek.toolsets import Binding, Episode
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    demo = ensure_demo(patients=40, seed=7)
    task = Task.model_validate(json.loads(demo.tasks.read_text().splitlines()[0]))
    ts = EhrToolset(EhrConfig(database="demo:patients=40,seed=7"), None)
    ts.open()
    try:
        e = Episode(binding=Binding.from_task(task), task=task)
        out = ts.ehr_sql(e, "SELECT count(*) AS n, max(charttime) AS last FROM labevents")
        n, last = out.splitlines()[1].split("|")
        assert int(n) > 0 and last <= task.prediction_time.isoformat(sep=" ")[:16]
        adm = ts.ehr_sql(e, f"SELECT dischtime, hospital_expire_flag FROM admissions WHERE hadm_id = {task.hadm_id}")
        assert adm.splitlines()[1] == "|"      # the current stay's outcome is masked
    finally:
        ts.close()


# Exact values only: an average can round differently on the two backends (binary sums in different orders).
DEMO_QUERIES = [
    "SELECT hadm_id, admittime, dischtime, admission_type, discharge_location FROM admissions ORDER BY admittime",
    "SELECT d.label, count(*) AS n, min(l.valuenum) AS lowest, max(l.valuenum) AS highest FROM labevents l "
    "JOIN d_labitems d USING (itemid) GROUP BY d.label ORDER BY n DESC, d.label LIMIT 10",
    "SELECT charttime, itemid, valuenum FROM chartevents ORDER BY charttime DESC, itemid LIMIT 20",
    "SELECT icd_code, icd_version FROM diagnoses_icd ORDER BY hadm_id, seq_num",
    "SELECT drug, starttime, stoptime FROM prescriptions ORDER BY starttime, drug",
    "SELECT note_id, length(text) AS n FROM discharge ORDER BY note_id",
    "SELECT count(*) AS n, max(study_datetime) AS last FROM cxr_metadata",
]


@pytest.mark.postgres
def test_demo_cohort_on_postgres_answers_like_duckdb(tmp_path):
    """The demo cohort loaded into PostgreSQL: the same queries and tools give the same text for several tasks."""
    import json
    import os

    from clinseek_demo.demo import ensure_demo
    from clinseek.tasks import Task
    from clinseek.toolsets import Binding, Episode
    from clinseek_ehr.pgload import load_duckdb_into_postgres
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    dsn = os.environ.get("CLINSEEK_TEST_PG_DSN")
    if not dsn:
        pytest.skip("CLINSEEK_TEST_PG_DSN is not set (source .ci/start_postgres.sh)")
    demo = ensure_demo(patients=40, seed=7)
    load_duckdb_into_postgres(demo.db, dsn, schema="ehr_demo")
    duck = EhrToolset(EhrConfig(database=str(demo.db)), None)
    pg = EhrToolset(EhrConfig(database=dsn, pg_schema="ehr_demo", pool_size=2), None)
    duck.open()
    pg.open()
    try:
        lines = demo.tasks.read_text().splitlines()
        for line in lines[:: max(1, len(lines) // 8)]:
            task = Task.model_validate(json.loads(line))
            e1 = Episode(binding=Binding.from_task(task), task=task)
            e2 = Episode(binding=Binding.from_task(task), task=task)
            for q in DEMO_QUERIES:
                assert pg.ehr_sql(e2, q) == duck.ehr_sql(e1, q), (task.qid, q)
            for tool, args in [("ehr_tables", {}), ("ehr_latest", {"table": "labevents"}),
                               ("ehr_timeline", {}), ("ehr_search", {"keyword": "pneumonia"})]:
                assert getattr(pg, tool)(e2, **args) == getattr(duck, tool)(e1, **args), (task.qid, tool)
    finally:
        duck.close()
        pg.close()
