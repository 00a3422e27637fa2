"""The run commands end to end through the CLI: validate, apply, tools, call, plugins; exit codes."""
from __future__ import annotations

import json

import pytest
import yaml

from clinseek.cli import main
from spine_fixtures import write_recipe, write_tasks


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_apply_writes_a_complete_run_directory(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    code, out, err = run_cli(capsys, "apply", str(recipe), "--workers", "2")
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for key in ("recipe", "recipe_sha256", "clinseek_version", "plugins", "host", "environment", "started",
                "ended", "counts"):
        assert key in manifest
    assert manifest["counts"] == {"completed": 3}
    assert manifest["host"]["provider"] == "scripted"
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    trajs = [json.loads(line) for line in (run_dir / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(r["qid"] for r in results) == ["q0", "q1", "q2"]
    assert all(r["label"] and r["answer"] == ["yes"] for r in results)
    assert all(t["recipe_sha256"] == manifest["recipe_sha256"] for t in trajs)
    assert trajs[0]["tools"][-1]["name"] == "finish"
    assert "episodes: completed 3" in out


def test_apply_limit_and_runs_per_task(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, runs_per_task=2)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--limit", "2", "--quiet")
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    keys = sorted((r["qid"], r["run_index"]) for r in map(json.loads, (run_dir / "results.jsonl").open()))
    assert keys == [("q0", 0), ("q0", 1), ("q1", 0), ("q1", 1)]


def test_resume_runs_only_what_is_missing(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    run_cli(capsys, "apply", str(recipe), "--limit", "1", "--quiet")
    run_dir = next((tmp_path / "runs").iterdir())
    code, _, err = run_cli(capsys, "apply", str(recipe), "--resume", str(run_dir), "--quiet")
    assert code == 0, err
    qids = [json.loads(line)["qid"] for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(qids) == ["q0", "q1", "q2"]
    # A different recipe cannot resume this run.
    code, _, err = run_cli(capsys, "apply", str(recipe), "--resume", str(run_dir), "--set", "agent.max_turns=3")
    assert code == 2 and "different recipe" in err


def test_validate_reports_every_problem_with_exit_2(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, tools=[{"use": "notez"}, {"use": "notes", "with": {"max_chars": "many"}}],
                          host={"provider": "scripted", "scrpt": "x"})
    code, out, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "unknown toolset 'notez' (did you mean 'notes'?)" in err
    assert "tools[1].with.max_chars: expected an integer, got 'many'" in err
    assert "host.scrpt: unknown key 'scrpt' (did you mean 'script'?)" in err
    assert "Traceback" not in err


def test_validate_renders_templates_strictly(tmp_path, registry, capsys):
    (tmp_path / "sys.j2").write_text("Patient {{ task.subject_id }} {{ not_a_variable }}")
    recipe = write_recipe(tmp_path, prompts={"system": "sys.j2"})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "'not_a_variable' is undefined" in err
    (tmp_path / "sys.j2").write_text("Patient {{ task.subject_id }}; label {{ task.label }}")
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "has no attribute 'label'" in err  # templates never see the label
    (tmp_path / "sys.j2").write_text("Patient {{ task.subject_id }}")
    code, out, _ = run_cli(capsys, "validate", str(recipe))
    assert code == 0 and "ok" in out


def test_template_sandbox_refuses_unsafe_access(tmp_path, registry, capsys):
    (tmp_path / "sys.j2").write_text("{{ task.__class__.__mro__ }}")
    recipe = write_recipe(tmp_path, prompts={"system": "sys.j2"})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2


def test_cost_budget_without_price_is_a_validation_error(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, agent={"max_cost_usd": 1.0})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "needs host.price" in err


def test_outside_host_with_patient_data_is_refused(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "base_url": "https://api.example.com/v1"})
    code, _, err = run_cli(capsys, "apply", str(recipe))
    assert code == 2 and "outside the site" in err and "allow_external_hosts" in err
    assert not (tmp_path / "runs").exists()
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "base_url": "https://api.example.com/v1"},
                          governance={"allow_external_hosts": True})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    local = write_recipe(tmp_path, name="local.yaml", host={"provider": "scripted",
                                                            "base_url": "http://10.1.2.3:8000/v1"})
    code, _, err = run_cli(capsys, "validate", str(local))
    assert code == 0, err


def test_tools_prints_the_schemas(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    code, out, _ = run_cli(capsys, "tools", str(recipe), "--json")
    schemas = json.loads(out)
    assert [s["name"] for s in schemas][-1] == "finish"
    assert {"notes_echo", "notes_patient"} <= {s["name"] for s in schemas}
    code, out, _ = run_cli(capsys, "tools", str(recipe))
    assert "notes_echo(text: string, times?: integer)" in out


def test_call_runs_one_tool_inside_a_task_episode(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    code, out, _ = run_cli(capsys, "call", str(recipe), "notes_patient", "--task", "q1")
    assert code == 0 and "[E1] subject=1001 cutoff=2150-01-02T12:00:00" in out
    code, out, _ = run_cli(capsys, "call", str(recipe), "notes_fail", "--task", "q1")
    assert code == 0 and "Error: notes_fail failed" in out  # the tool ran; it answered with an error
    code, _, err = run_cli(capsys, "call", str(recipe), "notes_ech", "--task", "q1")
    assert code == 2 and "did you mean 'notes_echo'" in err
    code, _, err = run_cli(capsys, "call", str(recipe), "notes_echo", "--task", "nope")
    assert code == 2 and "no task with qid 'nope'" in err
    code, _, err = run_cli(capsys, "call", str(recipe), "notes_echo", "--task", "q1", "--args", "{text: x")
    assert code == 2 and "not valid JSON" in err


def test_malformed_task_lines_are_reported_and_skipped_or_fatal(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    tasks = tmp_path / "tasks.jsonl"
    lines = tasks.read_text().splitlines()
    lines.insert(1, '{"qid": "bad", "subject_id": 1}')
    lines.insert(2, "not json")
    tasks.write_text("\n".join(lines) + "\n")
    code, out, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0
    assert "tasks.jsonl:2: malformed task" in err and "prediction_time" in err
    assert "tasks.jsonl:3: malformed task" in err
    data = yaml.safe_load(recipe.read_text())
    data["tasks"]["on_error"] = "fail"
    recipe.write_text(yaml.safe_dump(data))
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 2 and "tasks.jsonl:2" in err


def test_task_filters_and_sampling(tmp_path, registry):
    from clinseek.engine import assemble, select_tasks
    from clinseek.recipe import load_recipe

    recipe = write_recipe(tmp_path, n_tasks=1)
    write_tasks(tmp_path / "tasks.jsonl", n=9)
    loaded = load_recipe(recipe, overrides=["tasks.filter.qid=[q1, q3, q5, q7]", "tasks.sample=3", "tasks.seed=4"])
    a = [t.qid for t in select_tasks(assemble(loaded))]
    b = [t.qid for t in select_tasks(assemble(loaded))]
    assert a == b and len(a) == 3 and set(a) <= {"q1", "q3", "q5", "q7"}


def test_unknown_command_and_bad_option_exit_2(capsys):
    code, _, err = run_cli(capsys, "aply")
    assert code == 2
    code, _, err = run_cli(capsys, "apply", "missing.yaml")
    assert code == 2 and "recipe not found" in err


def test_plugins_lists_built_ins_and_test_plugin(registry, capsys):
    code, out, _ = run_cli(capsys, "plugins", "--json")
    rows = {r["name"]: r for r in json.loads(out)}
    assert rows["spine-test"]["toolsets"] == ["notes"]
    assert "notes_echo" in rows["spine-test"]["tools"]["notes"]
    assert rows["spine-test"]["hosts"] == ["scripted"]
    assert rows["core"]["builtin"] and "jsonl" in rows["core"]["task_sources"]


def test_manifest_records_the_git_revision_of_the_recipe(tmp_path, registry, capsys):
    import subprocess

    recipe = write_recipe(tmp_path)
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "add", "recipe.yaml", "tasks.jsonl"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@x", "commit", "-qm", "r"],
                   check=True)
    head = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True,
                          text=True).stdout.strip()
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    assert manifest["git_revision"].startswith(head)


def test_a_run_with_failed_episodes_exits_1(tmp_path, registry, capsys):
    import spine_plugin as sp
    from clinseek.errors import ClinseekError

    def boom(messages, tools, ctx):
        raise ClinseekError("upstream 500 after retries")

    sp.SCRIPTS["boom"] = boom
    recipe = write_recipe(tmp_path, host={"provider": "scripted", "script": "boom"})
    code, out, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 1 and "episodes: error 3" in out and "ended in error" in err


def test_a_rejected_request_stops_the_run_with_exit_2(tmp_path, registry, capsys):
    import spine_plugin as sp
    from clinseek.hosts.errors import HostRequestRejected

    calls = []

    def rejected(messages, tools, ctx):
        calls.append(ctx.task.qid)
        raise HostRequestRejected("401 Unauthorized: the API key was rejected", hint="check host.api_key")

    sp.SCRIPTS["rejected"] = rejected
    recipe = write_recipe(tmp_path, n_tasks=3, host={"provider": "scripted", "script": "rejected"})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--workers", "1")
    assert code == 2 and "API key was rejected" in err
    assert len(calls) == 1  # the other episodes were not started
    manifest = json.loads(next((tmp_path / "runs").glob("*/manifest.json")).read_text())
    assert manifest["ended"] is not None


def test_trajectory_mode_exports_after_the_run(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, output={"dir": str(tmp_path / "runs"), "report": False, "mode": "trajectories",
                                            "export": {"formats": ["openai", "trl"], "out": "exported"}})
    code, out, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    assert "export kept 3 of 3 trajectories" in out
    rows = [json.loads(line) for line in (tmp_path / "exported" / "trl" / "trl.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and rows[0]["messages"][0]["role"] == "system"


def test_bad_export_options_are_validation_errors(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, output={"mode": "trajectories", "export": {"formats": ["tlr"], "min_scor": 1}})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2
    assert "output.export.min_scor: unknown key 'min_scor' (did you mean 'min_score'?)" in err
    assert "unknown exporter 'tlr' (did you mean 'trl'?)" in err


def test_curated_mode_uses_the_task_input_or_the_curator(tmp_path, registry):
    import asyncio

    import spine_plugin as sp
    from clinseek.engine import assemble, make_runner, select_tasks
    from clinseek.recipe import load_recipe

    class Curating(sp.NotesToolset):
        name = "notes"
        can_curate = True   # the declared capability; a curate() method alone is not enough

        def curate(self, binding, window_hours, max_events):
            return f"curated {binding.subject_id} {window_hours:g}h {max_events}"

    recipe = write_recipe(tmp_path, agent={"evidence": "curated", "curated": {"window_hours": 6}},
                          host={"provider": "scripted", "script": "finish_yes"})
    rows = [json.loads(line) for line in (tmp_path / "tasks.jsonl").read_text().splitlines()]
    rows[0]["input"] = "the released package"
    (tmp_path / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def prompts(*overrides):
        assembly = assemble(load_recipe(recipe, overrides=overrides))
        assembly.toolsets[0].__class__ = Curating
        out = []
        for task in select_tasks(assembly):
            runner = make_runner(assembly, task, 0)
            assert [s["name"] for s in runner.tool_schemas] == ["finish"]  # no data tools in curated mode
            out.append(runner.state.messages[1]["content"])
            asyncio.run(runner.run())
        return out

    auto = prompts()
    assert "the released package" in auto[0] and "curated 1001 6h 100" in auto[1]
    forced = prompts("agent.curated.source=curator")
    assert "curated 1000 6h 100" in forced[0]
    from clinseek.errors import UserError

    with pytest.raises(UserError, match="agent.curated.source is 'task'"):
        prompts("agent.curated.source=task")


def test_resume_drops_a_torn_last_line(tmp_path):
    from clinseek.runs import RESULTS, RunDir

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    good = json.dumps({"qid": "a", "run_index": 0, "status": "completed"})
    (run / RESULTS).write_text(good + "\n" + "x" * 70000 + '{"qid": "b", "run_')  # killed mid-write
    opened = RunDir.open_existing(run)
    assert (run / RESULTS).read_text() == good + "\n"
    assert opened.done_keys() == {("a", 0)}
    opened.close()  # the writer's lock: released when a run ends
    (run / RESULTS).write_text('{"qid": "c", "run_index"')  # nothing complete at all
    RunDir.open_existing(run)
    assert (run / RESULTS).read_text() == ""


def test_a_plugin_bug_in_open_is_one_message_not_a_traceback(tmp_path, registry, capsys, monkeypatch):
    import spine_plugin as sp

    def buggy_open(self):
        raise ValueError("could not parse notes index")

    monkeypatch.setattr(sp.NotesToolset, "open", buggy_open)
    code, _, err = run_cli(capsys, "apply", str(write_recipe(tmp_path)))
    assert code == 2
    assert "toolset 'notes' failed to open: ValueError: could not parse notes index" in err
    assert "Traceback" not in err and "raises UserError" in err


def test_a_recipe_names_a_plugins_scorer_and_apply_runs_it(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, output={"dir": str(tmp_path / "runs"), "report": False,
                                            "scorers": ["answer_length"]})
    code, _, err = run_cli(capsys, "apply", str(recipe))
    assert code == 0, err
    scores = json.loads((next((tmp_path / "runs").iterdir()) / "scores.json").read_text())
    assert scores["extra"]["answer_length"] == {"answer_length": 1.0}


def test_an_unknown_scorer_is_a_validation_problem(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, output={"dir": str(tmp_path / "runs"), "scorers": ["answer_lenght"]})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "answer_lenght" in err and "answer_length" in err
