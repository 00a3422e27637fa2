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

    from clinseek.cohort.demo import ensure_demo
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
