"""Run directories under failure: retried errors, the writer's lock, torn and duplicated lines, runs with nothing
to score, failed starts and Ctrl-C (docs/runs.md)."""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clinseek.cli import main
from spine_fixtures import write_recipe

TESTS = Path(__file__).resolve().parent


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def the_run(tmp_path: Path) -> Path:
    (run_dir,) = list((tmp_path / "runs").iterdir())
    return run_dir


def flaky_host(down: set[str]):
    """A scripted host that fails for the qids in `down` (as a server returning 503s would) and else answers
    `no`; clearing `down` brings the server back."""
    import spine_plugin as sp
    from clinseek.errors import ClinseekError

    def flaky(messages, tools, ctx):
        if ctx.task.qid in down:
            raise ClinseekError("upstream 503 after retries")
        return sp.reply(sp.call("finish", answer=["no"]))

    sp.SCRIPTS["flaky"] = flaky
    return {"provider": "scripted", "script": "flaky"}


# 1. Retrying errored episodes ---------------------------------------------------------------------------------

def test_retry_errors_reruns_errored_episodes_and_keeps_the_old_lines(tmp_path, registry, capsys):
    down = {"q1", "q3"}
    recipe = write_recipe(tmp_path, n_tasks=4, host=flaky_host(down))  # labels: q0 yes, q1 no, q2 yes, q3 no
    code, out, err = run_cli(capsys, "apply", recipe, "--quiet", "--workers", "1")
    assert code == 1 and "episodes: completed 2, error 2" in out
    assert "2 episode(s) ended in error (2 x upstream 503 after retries)" in err
    run_dir = the_run(tmp_path)
    assert f"run them again with: clinseek apply {recipe} --workers 1 --resume {run_dir} --retry-errors" in err
    results, trajs = run_dir / "results.jsonl", run_dir / "trajectories.jsonl"
    first = lines(results)

    # A plain resume counts an errored episode as done; scoring says so above the table.
    code, _, _ = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--quiet", "--workers", "1")
    assert code == 1 and lines(results) == first
    code, out, _ = run_cli(capsys, "score", run_dir)
    assert code == 0
    assert out.splitlines()[0] == ("note: 2 of 4 episodes ended in error and score 0 here (reasons: 2 x upstream "
                                   "503 after retries)")
    assert "--retry-errors" in out.splitlines()[1]
    assert json.loads((run_dir / "scores.json").read_text())["overall"]["f1"] == 0.0

    code, _, err = run_cli(capsys, "apply", recipe, "--retry-errors", "--quiet")
    assert code == 2 and "--retry-errors needs --resume" in err

    down.clear()  # the server is back
    code, out, err = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--retry-errors", "--quiet",
                             "--workers", "1")
    assert code == 0, err
    assert "episodes: completed 4" in out
    now = lines(results)
    assert now[:4] == first and len(now) == 6  # append-only: the errored lines are still there
    retried = [json.loads(line) for line in now[4:]]
    assert sorted(r["qid"] for r in retried) == ["q1", "q3"]
    assert all(r["status"] == "completed" and r["attempt"] == 1 for r in retried)
    traj_rows = [json.loads(line) for line in lines(trajs)]
    assert len(traj_rows) == 6 and [t["attempt"] for t in traj_rows[4:]] == [1, 1]
    scores = json.loads((run_dir / "scores.json").read_text())
    assert scores["counts"]["runs"] == 4 and scores["counts"]["completed"] == 4
    assert scores["overall"]["f1"] == pytest.approx(0.5)  # q1 and q3 now answer `no`, rightly
    assert scores["errors"]["errors"] == 0
    assert "2 that ended in error (--retry-errors)" in (run_dir / "events.log").read_text()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"completed": 4}

    # Nothing left to retry: a second retry runs nothing and writes nothing.
    code, _, _ = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--retry-errors", "--quiet")
    assert code == 0 and lines(results) == now


def test_a_kill_between_the_two_writes_of_a_retry_is_completed_not_rerun(tmp_path):
    from clinseek.runs import RunDir

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    old = {"qid": "a", "run_index": 0, "status": "error", "reason": "boom", "attempt": 0}
    new = {"qid": "a", "run_index": 0, "status": "completed", "answer": ["yes"], "attempt": 1}
    (run / "results.jsonl").write_text(json.dumps(old) + "\n")
    (run / "trajectories.jsonl").write_text(json.dumps({"qid": "a", "run_index": 0, "attempt": 0, "result": old})
                                            + "\n" + json.dumps({"qid": "a", "run_index": 0, "attempt": 1,
                                                                 "result": new}) + "\n")
    opened = RunDir.open_existing(run)
    try:
        assert opened.effective_results()[("a", 0)]["status"] == "completed"
        assert len(lines(run / "results.jsonl")) == 2
    finally:
        opened.close()


# 2. One writer per run directory ---------------------------------------------------------------------------

def test_a_second_writer_is_refused_and_told_who_holds_the_run(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path)
    code, _, err = run_cli(capsys, "apply", recipe, "--limit", "1", "--quiet")
    assert code == 0, err
    run_dir = the_run(tmp_path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from clinseek.runs import RunDir; "
                               "r = RunDir.open_existing(Path(sys.argv[1])); print('locked', flush=True); "
                               "sys.stdin.read()", str(run_dir)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = lines(run_dir / "results.jsonl")
        code, _, err = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--quiet")
        assert code == 2
        assert "is in use by another clinseek process" in err
        assert f"pid {holder.pid} on host {socket.gethostname()}, started 20" in err
        assert lines(run_dir / "results.jsonl") == before  # nothing run, nothing repaired
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    code, _, err = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--quiet")  # released with its holder
    assert code == 0, err
    assert len(lines(run_dir / "results.jsonl")) == 3


def test_the_lock_is_held_for_the_whole_run_in_process_too(tmp_path):
    from clinseek.errors import UserError
    from clinseek.runs import RunDir

    first = RunDir.create(tmp_path, "x")
    (first.path / "manifest.json").write_text("{}")
    with pytest.raises(UserError, match=f"pid {os.getpid()}"):
        RunDir.open_existing(first.path)
    first.close()
    RunDir.open_existing(first.path).close()


# 3. Torn and duplicated lines -------------------------------------------------------------------------------

def test_a_duplicated_result_line_counts_once_and_is_named(tmp_path, capsys):
    from clinseek.report import build_report_data
    from clinseek.report.sample import write_sample_run
    from clinseek.scoring import score_run

    run = write_sample_run(tmp_path / "run")
    clean = score_run(run, write=False)
    rows = lines(run / "results.jsonl")
    (run / "results.jsonl").write_text("\n".join(rows + [rows[1]]) + "\n")  # a hand-merged copy of line 2
    code, out, err = run_cli(capsys, "score", run, "--json", "--no-write")
    assert code == 0
    qid = json.loads(rows[1])["qid"]
    assert (f"warning: {run / 'results.jsonl'}:9: duplicate result for qid {qid}, run 1 (same as line 2); "
            f"counted once") in err
    scores = json.loads(out)
    assert scores["counts"]["runs"] == 8 and scores["overall"] == clean["overall"]
    data = build_report_data(run)
    assert any("duplicate result" in w for w in data["problems"]["warnings"])


def test_a_torn_trajectory_is_named_and_resume_reruns_it_in_trajectory_mode(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, output={"dir": str(tmp_path / "runs"), "report": False,
                                            "mode": "trajectories", "export": {"formats": ["openai"]}})
    code, _, err = run_cli(capsys, "apply", recipe, "--quiet")
    assert code == 0, err
    run_dir = the_run(tmp_path)
    trajs = run_dir / "trajectories.jsonl"
    text = trajs.read_text()
    last = text.splitlines()[-1]
    qid = json.loads(last)["qid"]
    trajs.write_text(text[:len(text) - len(last) // 2 - 1])  # the last line torn mid-write, its result kept

    code, _, err = run_cli(capsys, "report", run_dir)
    assert code == 0
    assert f"trajectories.jsonl:3: torn last line (qid {qid}, run 0) skipped" in err
    assert f"1 episode(s) have a result but no trajectory (e.g. qid {qid}, run 0)" in err
    code, out, err = run_cli(capsys, "export", run_dir)
    assert code == 0 and "kept 2 of 2" in out and "torn last line" in err

    code, out, err = run_cli(capsys, "apply", recipe, "--resume", run_dir, "--quiet")
    assert code == 0, err
    assert f"trajectories.jsonl:3: torn last line (qid {qid}, run 0) dropped" in err
    assert "export kept 3 of 3 trajectories" in out
    rows = [json.loads(line) for line in lines(trajs)]
    assert len(rows) == 3 and rows[-1]["qid"] == qid and rows[-1]["attempt"] == 1
    results = [json.loads(line) for line in lines(run_dir / "results.jsonl")]
    assert len(results) == 4 and results[-1]["qid"] == qid and results[-1]["attempt"] == 1
    assert "torn last line" in (run_dir / "events.log").read_text()


def test_a_torn_result_line_is_named_when_scoring(tmp_path, capsys):
    from clinseek.report.sample import write_sample_run

    run = write_sample_run(tmp_path / "run")
    text = (run / "results.jsonl").read_text()
    (run / "results.jsonl").write_text(text[:-40])
    code, _, err = run_cli(capsys, "score", run, "--no-write")
    assert code == 0
    assert "results.jsonl:8: torn last line (qid diagnosis_ccsr_4_40, run 1) skipped" in err


# 4. Nothing to score, failed starts, Ctrl-C ----------------------------------------------------------------

def test_a_run_whose_episodes_all_errored_has_no_score(tmp_path, registry, capsys):
    from clinseek.report import build_report_data, write_report

    recipe = write_recipe(tmp_path, host=flaky_host({"q0", "q1", "q2"}))
    code, out, err = run_cli(capsys, "apply", recipe, "--quiet")
    assert code == 1
    assert "score: none (all 3 episode(s)" in out and "upstream 503 after retries" in out
    run_dir = the_run(tmp_path)
    assert not (run_dir / "scores.json").exists()
    code, out, err = run_cli(capsys, "score", run_dir)
    assert code == 2 and out == ""
    assert "all 3 episode(s)" in err and "ended in error: there is no score" in err
    assert "3 x upstream 503 after retries" in err and "--retry-errors" in err
    data = build_report_data(run_dir)
    assert data["problems"]["scorable"] is False and data["problems"]["errors"] == 3
    assert data["problems"]["reasons"] == {"upstream 503 after retries": 3}
    assert data["scores"]["overall"] == {}  # no numbers rather than zeros
    html = write_report(run_dir).read_text()
    assert '<div id="banner" role="alert" hidden></div>' in html and "All \" + pr.episodes" in html


def test_a_run_with_no_episodes_has_no_score(tmp_path, capsys):
    from clinseek.report import build_report_data

    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    (run / "results.jsonl").write_text("")
    code, _, err = run_cli(capsys, "score", run)
    assert code == 2 and "has no episodes: there is nothing to score" in err
    assert not (run / "scores.json").exists()
    data = build_report_data(run)
    assert data["problems"]["episodes"] == 0 and data["problems"]["scorable"] is False


def test_some_errors_are_said_in_the_report(tmp_path, registry, capsys):
    from clinseek.report import build_report_data

    recipe = write_recipe(tmp_path, host=flaky_host({"q1"}))
    run_cli(capsys, "apply", recipe, "--quiet")
    run_dir = the_run(tmp_path)
    problems = build_report_data(run_dir)["problems"]
    assert problems["scorable"] is True and problems["errors"] == 1 and problems["episodes"] == 3
    assert problems["retry_command"].endswith(f"--resume {run_dir} --retry-errors")


def test_a_failed_start_leaves_no_run_directory(tmp_path, registry, capsys, monkeypatch):
    import spine_plugin as sp
    from clinseek.errors import UserError

    recipe = write_recipe(tmp_path, n_tasks=0)
    code, _, err = run_cli(capsys, "apply", recipe)
    assert code == 2 and "holds no task rows" in err
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())

    def fails_to_open(self):
        raise UserError("notes database not found: /nowhere/notes.db")

    recipe = write_recipe(tmp_path)
    monkeypatch.setattr(sp.NotesToolset, "open", fails_to_open)
    code, _, err = run_cli(capsys, "apply", recipe)
    assert code == 2 and "notes database not found" in err
    assert not list((tmp_path / "runs").iterdir())


DRIVER = """
import sys
sys.path.insert(0, sys.argv[1])
import spine_plugin
from clinseek.plugins import get_registry
reg = get_registry()
reg.register_module(spine_plugin, name="spine-test")
reg.collect()
from clinseek.cli import main
main(sys.argv[2:])
"""


def test_ctrl_c_says_how_far_the_run_got_and_how_to_finish_it(tmp_path, registry, capsys, monkeypatch):
    write_recipe(tmp_path, n_tasks=8, host={"provider": "scripted", "script": "seek_then_finish", "delay_s": 0.3})
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(TESTS), "apply", "recipe.yaml", "--workers", "1",
                             "--quiet"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    results = None
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        found = list((tmp_path / "runs").glob("*/results.jsonl"))
        if found and lines(found[0]):
            results = found[0]
            break
        time.sleep(0.05)
    assert results is not None, "the run never wrote a result"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    done = len(lines(results))
    assert 1 <= done < 8
    message = next(line for line in err.splitlines() if line.startswith("interrupted: "))
    run_dir = results.parent
    assert message.startswith(f"interrupted: {done} of 8 episodes done; finish the run with: clinseek apply "
                              f"recipe.yaml --workers 1 --resume {run_dir}")
    assert message in (run_dir / "events.log").read_text()
    assert "Traceback" not in err
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["interrupted"] is True and manifest["ended"]

    command = shlex.split(message.split("finish the run with: ", 1)[1])
    assert command[:2] == ["clinseek", "apply"]
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *command[1:], "--quiet", "--set", "host.delay_s=0")
    assert code == 2 and "different recipe" in err  # the exact command, not a similar one, resumes it
    code, _, err = run_cli(capsys, *command[1:], "--quiet")
    assert code == 0, err
    keys = [(r["qid"], r["run_index"]) for r in map(json.loads, lines(results))]
    assert sorted(keys) == sorted((f"q{i}", 0) for i in range(8))  # every task once


# 5. The report's header -------------------------------------------------------------------------------------

def test_the_report_header_shows_the_runs_start_and_end(tmp_path, registry, capsys):
    from clinseek.report import build_report_data

    recipe = write_recipe(tmp_path)
    run_cli(capsys, "apply", recipe, "--quiet")
    run_dir = the_run(tmp_path)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    run = build_report_data(run_dir)["run"]
    assert run["started"] == manifest["started"] and run["ended"] == manifest["ended"]
    assert run["started"] and run["ended"]
    js = (Path(__file__).resolve().parent.parent / "clinseek" / "report" / "report.js").read_text()
    assert '"started " + run.started' in js and '"ended " + run.ended' in js


def test_compare_resamples_has_help(capsys):
    code, out, _ = run_cli(capsys, "compare", "--help")
    assert code == 0
    after = out.split("--resamples", 1)[1].split("--seed", 1)[0]
    assert "bootstrap" in after.lower() and "[default: 2000" in after


def test_compare_refuses_a_run_that_only_errored(tmp_path, capsys):
    from clinseek.report.sample import EPISODES, write_sample_run

    good = write_sample_run(tmp_path / "good")
    failed = write_sample_run(tmp_path / "failed", [e[:6] + ("error",) + e[7:] for e in EPISODES])
    code, _, err = run_cli(capsys, "compare", good, failed)
    assert code == 2 and "every episode of" in err and "has no score to compare" in err


def test_a_malformed_record_is_refused_before_anything_is_written(tmp_path):
    from clinseek.runs import RunDir

    run = RunDir.create(tmp_path, "typed")
    good = {"qid": "q1", "run_index": 0, "status": "completed", "answer": ["yes"]}
    trajectory = {"qid": "q1", "run_index": 0, "status": "completed", "messages": []}
    run.record_episode(good, trajectory)
    for bad_result, bad_trajectory in (({**good, "status": "done"}, trajectory),
                                       ({**good, "answer": "yes"}, trajectory),
                                       (good, {k: v for k, v in trajectory.items() if k != "messages"})):
        with pytest.raises(ValueError, match="refusing to write a malformed"):
            run.record_episode(bad_result, bad_trajectory)
    assert len((run.path / "results.jsonl").read_text().splitlines()) == 1
    assert len((run.path / "trajectories.jsonl").read_text().splitlines()) == 1
    run.close()
