"""What a model is offered: tools per task family (agent.tools_by_task), finish limited to the task's candidates,
and toolsets that narrow their schemas once open (ehr: the real table names)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinseek.cli import main
from spine_fixtures import write_recipe

ROOT = Path(__file__).resolve().parent.parent


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def _trajectories(tmp_path):
    run_dir = next((tmp_path / "runs").iterdir())
    return [json.loads(line) for line in (run_dir / "trajectories.jsonl").read_text().splitlines()]


def test_tools_by_task_offers_only_the_listed_tools(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, agent={"tools_by_task": {"risk_prediction": ["notes_patient", "notes_echo"]}})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    for traj in _trajectories(tmp_path):
        names = [t["name"] for t in traj["tools"]]
        assert sorted(names[:-1]) == ["notes_echo", "notes_patient"] and names[-1] == "finish"


def test_the_task_name_wins_over_its_type_and_unlisted_tasks_get_every_tool(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, agent={"tools_by_task": {"risk_prediction": ["notes_echo"],
                                                             "mortality": ["notes_patient", "notes_echo"],
                                                             "other_task": ["notes_big"]}})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    assert {frozenset(t["name"] for t in traj["tools"]) for traj in _trajectories(tmp_path)} == \
        {frozenset({"notes_patient", "notes_echo", "finish"})}
    recipe = write_recipe(tmp_path, name="r2.yaml", agent={"tools_by_task": {"other_task": ["notes_big"]}},
                          output={"dir": str(tmp_path / "runs2"), "report": False})
    run_cli(capsys, "apply", str(recipe), "--quiet")
    traj = json.loads(next((tmp_path / "runs2").iterdir()).joinpath("trajectories.jsonl").read_text().splitlines()[0])
    assert len(traj["tools"]) > 3 and "notes_big" in {t["name"] for t in traj["tools"]}


def test_an_unknown_tool_in_tools_by_task_is_a_user_error_with_its_place(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, agent={"tools_by_task": {"mortality": ["notes_echo", "ehr_sql"]}})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "agent.tools_by_task.mortality: no tool named 'ehr_sql'" in err and "recipe.yaml:" in err
    assert "notes_echo" in err  # the hint lists the real tools


def test_finish_offers_exactly_the_candidates(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    assert run_cli(capsys, "apply", str(recipe), "--quiet")[0] == 0
    finish = _trajectories(tmp_path)[0]["tools"][-1]
    answer = finish["parameters"]["properties"]["answer"]
    assert answer["items"] == {"type": "string", "enum": ["yes", "no"]}
    assert finish["parameters"]["properties"]["evidence"]["items"]["pattern"] == "^E[0-9]+$"


@pytest.mark.slow
def test_ehr_table_arguments_list_the_databases_tables(tmp_path):
    from clinseek.commands.common import load
    from clinseek.engine import assemble, make_runner, select_tasks
    assembly = assemble(load(str(ROOT / "recipes" / "demo.yaml"), None, ()))
    assembly.open()
    try:
        task = select_tasks(assembly, limit=1)[0]
        tools = {t["name"]: t for t in make_runner(assembly, task, 0).tool_schemas}
    finally:
        assembly.close()
    latest = tools["ehr_latest"]["parameters"]["properties"]["table"]["enum"]
    described = tools["ehr_describe"]["parameters"]["properties"]["table"]["enum"]
    assert "labevents" in latest and "d_labitems" not in latest  # patient tables only
    assert "d_labitems" in described and "patient_vitals" not in described
    assert "enum" not in tools["ehr_sql"]["parameters"]["properties"]["query"]
