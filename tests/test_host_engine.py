"""The OpenAI host inside `clinseek apply`: usage, cost, manifest, cache hits on a re-run, errors, governance."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.openai_server import FakeOpenAIServer, completion, error, tool_call  # noqa: E402
from spine_fixtures import write_recipe  # noqa: E402

from clinseek.cli import main  # noqa: E402


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def echo_then_finish(request):
    messages = request.json()["messages"]
    if messages[-1]["role"] == "tool":
        return completion(None, [tool_call("finish", {"answer": ["yes"], "evidence": ["E1"]})],
                          prompt_tokens=2000, completion_tokens=100, cached_tokens=1000)
    return completion(None, [tool_call("notes_echo", {"text": "hi"})], prompt_tokens=1000, completion_tokens=50)


@pytest.fixture
def server():
    s = FakeOpenAIServer(default=echo_then_finish).start()
    yield s
    s.stop()


def results_of(folder: Path) -> tuple[dict, list[dict]]:
    run_dir = max((folder / "runs").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    return manifest, [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_apply_records_usage_cost_and_hits_the_cache_on_a_rerun(tmp_path, registry, capsys, server):
    host = {"provider": "openai", "base_url": server.base_url, "model": "fake-model", "api_key": "sk-hidden-1",
            "cache": "cache.sqlite", "price": {"input": 1.0, "output": 10.0, "cached_input": 0.1}}
    recipe = write_recipe(tmp_path, host=host, output={"dir": str(tmp_path / "runs"), "report": False})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--workers", "3")
    assert code == 0, err
    manifest, results = results_of(tmp_path)
    assert manifest["host"] == {"provider": "openai", "model": "fake-model", "base_url": server.base_url,
                                "site_local": True}
    assert "sk-hidden-1" not in json.dumps(manifest)
    assert len(results) == 3 and all(r["status"] == "completed" for r in results)
    r = results[0]
    assert r["usage"] == {"input_tokens": 3000, "output_tokens": 150, "cached_tokens": 1000}
    assert r["cost_usd"] == pytest.approx((2000 * 1.0 + 1000 * 0.1 + 150 * 10.0) / 1e6)
    assert len(server.requests) == 6 and (tmp_path / "cache.sqlite").exists()

    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 0, err
    _, again = results_of(tmp_path)
    assert len(server.requests) == 6  # every turn came from the cache
    assert all(r["cached_calls"] == r["host_calls"] == 2 and r["answer"] == ["yes"] for r in again)


def test_a_bad_key_stops_the_run_with_a_fix(tmp_path, registry, capsys, server):
    server.default = lambda request: error(401, "invalid key sk-wrong-22")
    host = {"provider": "openai", "base_url": server.base_url, "model": "fake-model", "api_key": "sk-wrong-22"}
    recipe = write_recipe(tmp_path, host=host, n_tasks=3, output={"dir": str(tmp_path / "runs"), "report": False})
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--workers", "1")
    # Every episode would fail alike: the run stops at the first rejection, exit 2 (the fix is in the recipe).
    assert code == 2
    assert "HTTP 401" in err and "api_key" in err and "sk-wrong-22" not in err
    assert len(server.requests) == 1


def test_outside_host_needs_governance_opt_in(tmp_path, registry, capsys):
    host = {"provider": "openai", "base_url": "https://api.example.com/v1", "model": "m"}
    recipe = write_recipe(tmp_path, host=host)
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "outside the site" in err
    allowed = write_recipe(tmp_path, name="allowed.yaml", host=host, governance={"allow_external_hosts": True})
    code, _, err = run_cli(capsys, "validate", str(allowed))
    assert code == 0, err
    declared = write_recipe(tmp_path, name="declared.yaml", host={**host, "site_local": True})
    code, _, err = run_cli(capsys, "validate", str(declared))
    assert code == 0, err


def test_unknown_host_option_is_a_validation_error(tmp_path, registry, capsys):
    recipe = write_recipe(tmp_path, host={"provider": "openai", "model": "m", "base_url": "http://127.0.0.1/v1",
                                          "max_retry": 3})
    code, _, err = run_cli(capsys, "validate", str(recipe))
    assert code == 2 and "max_retry" in err


def test_anthropic_thinking_survives_the_engine_and_is_replayed(tmp_path, registry, capsys, monkeypatch):
    from fake_servers.anthropic_server import FakeAnthropicServer, message, thinking, tool_use

    def script(request):
        turns = request.json()["messages"]
        if len(turns) == 1:
            return message(thinking("look first", "sig-9"), tool_use("notes_echo", {"text": "hi"}, "tu_1"))
        return message(tool_use("finish", {"answer": ["yes"]}, "tu_2"))

    server = FakeAnthropicServer(default=script).start()
    try:
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-env")
        host = {"provider": "anthropic", "base_url": server.url, "model": "claude-test",
                "thinking": {"type": "enabled", "budget_tokens": 1024}}
        recipe = write_recipe(tmp_path, host=host, n_tasks=1, output={"dir": str(tmp_path / "runs"), "report": False})
        code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    finally:
        server.stop()
    assert code == 0, err
    _, results = results_of(tmp_path)
    assert results[0]["status"] == "completed" and results[0]["answer"] == ["yes"]
    second = server.bodies()[1]["messages"]
    assert [b["type"] for b in second[1]["content"]] == ["thinking", "tool_use"]
    assert second[1]["content"][0]["signature"] == "sig-9"
    assert second[2]["content"][0]["type"] == "tool_result" and second[2]["content"][0]["tool_use_id"] == "tu_1"


def test_a_null_message_fails_that_episode_and_the_run_goes_on(tmp_path, registry, capsys, server):
    from fake_servers.http import Reply

    replies = {"n": 0}

    def null_for_the_first_episode(request):
        replies["n"] += 1
        if replies["n"] <= 2:  # the first episode's request and its one retry
            return Reply(200, {"id": "chatcmpl-n", "object": "chat.completion", "choices": [{"message": None}]})
        return echo_then_finish(request)

    server.default = null_for_the_first_episode
    host = {"provider": "openai", "base_url": server.base_url, "model": "fake-model", "max_retries": 1,
            "backoff_base_s": 0.001}
    recipe = write_recipe(tmp_path, host=host, n_tasks=3, output={"dir": str(tmp_path / "runs"), "report": False})
    code, out, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--workers", "1")
    assert code == 1, err  # episodes ended in error: exit 1, not an aborted run (2)
    _, results = results_of(tmp_path)
    by_qid = {r["qid"]: r for r in results}
    assert by_qid["q0"]["status"] == "error" and "choices[0].message is null" in by_qid["q0"]["reason"]
    assert by_qid["q1"]["status"] == by_qid["q2"]["status"] == "completed"
