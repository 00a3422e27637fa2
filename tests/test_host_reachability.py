"""A model server that is down: the pre-flight check, `validate --check-host`, the circuit breaker, and resuming
after the breaker stopped a run. "Down" is a closed local port (bound, then closed: nothing listens there)."""
from __future__ import annotations

import asyncio
import json
import shlex
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.http import Reply  # noqa: E402
from fake_servers.openai_server import FakeOpenAIServer, completion, error, tool_call  # noqa: E402
from spine_fixtures import write_recipe  # noqa: E402

from clinseek.cli import main  # noqa: E402
from clinseek.hosts.base import GenerateContext  # noqa: E402
from clinseek.hosts.errors import HostError, HostUnreachable  # noqa: E402
from clinseek.hosts.openai_host import OpenAIConfig, OpenAIHost  # noqa: E402
from clinseek.hosts.preflight import connect_failure  # noqa: E402

MESSAGES = [{"role": "user", "content": "Is the patient ok?"}]


@pytest.fixture
def closed_port() -> int:
    from clinseek.testing import closed_port as free_port

    return free_port()


def finish_after_echo(request):
    if request.json()["messages"][-1]["role"] == "tool":
        return completion(None, [tool_call("finish", {"answer": ["yes"]})])
    return completion(None, [tool_call("notes_echo", {"text": "hi"})])


@pytest.fixture
def server():
    s = FakeOpenAIServer(default=finish_after_echo).start()
    yield s
    s.stop()


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def make_host(base_url: str, **options) -> OpenAIHost:
    host = OpenAIHost(OpenAIConfig.model_validate({"provider": "openai", "base_url": base_url, "model": "fake-model",
                                                   "backoff_base_s": 0.001, **options}))

    async def no_wait(seconds):
        return None

    host._sleep = no_wait
    return host


def openai_host(url: str, **options) -> dict:
    return {"provider": "openai", "base_url": url, "model": "fake-model", "backoff_base_s": 0.001, **options}


def files_of(run_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file() and p.name != "run.lock"}


# Pre-flight -----------------------------------------------------------------------------------------------------

def test_preflight_finds_a_closed_port_unreachable(closed_port):
    check = make_host(f"http://127.0.0.1:{closed_port}/v1").preflight()
    assert not check.reachable
    assert check.url == f"http://127.0.0.1:{closed_port}/v1/models"
    assert "connection refused" in check.problem and f"127.0.0.1:{closed_port}" in check.problem


def test_preflight_on_a_live_server_is_reachable_and_sends_the_key(server):
    seen = []

    async def handler(request, original=server._handle):
        seen.append(request)
        return await original(request)

    server.handler = handler
    check = make_host(server.base_url, api_key="sk-live-123").preflight()
    assert check.reachable and check.status == 200 and check.notes == []
    assert seen[0].path == "/v1/models" and seen[0].headers["authorization"] == "Bearer sk-live-123"


@pytest.mark.parametrize("status, expected", [(401, "check host.api_key"), (404, "ends in /v1"),
                                              (503, "answered HTTP 503")])
def test_a_live_server_answering_an_error_is_not_down(server, status, expected):
    async def handler(request):
        return error(status, "nope")

    server.handler = handler
    check = make_host(server.base_url).preflight()
    assert check.reachable and check.status == status
    assert len(check.notes) == 1 and expected in check.notes[0]


def test_preflight_notes_a_model_the_server_does_not_list(server):
    check = make_host(server.base_url, model="other-model").preflight()
    assert check.reachable and "'other-model'" in check.notes[0] and "fake-model" in check.notes[0]


def test_connect_failures_are_told_from_failures_after_connecting():
    class ConnectError(Exception):  # the name httpx (and the SDKs' forks) give a connection that did not open
        pass

    def chained(outer: Exception, inner: BaseException) -> Exception:
        outer.__cause__ = inner
        return outer

    refused = chained(RuntimeError("Connection error."), chained(ConnectError("x"), ConnectionRefusedError(111, "r")))
    dns = chained(RuntimeError("Connection error."), chained(ConnectError("x"), socket.gaierror(-2, "unknown name")))
    reset = chained(RuntimeError("Connection error."), ConnectionResetError(104, "reset by peer"))
    assert "connection refused" in connect_failure(refused, "h:1")
    assert "does not resolve" in connect_failure(dns, "h:1") and "unknown name" in connect_failure(dns, "h:1")
    assert connect_failure(reset) is None  # the server was there: not a reason to stop the run


def test_apply_against_a_dead_host_stops_before_creating_a_run(tmp_path, registry, capsys, closed_port):
    url = f"http://127.0.0.1:{closed_port}/v1"
    recipe = write_recipe(tmp_path, host=openai_host(url), n_tasks=10)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 2
    assert f"cannot reach the model server at {url}/models" in err and "connection refused" in err
    assert "run the same command again" in err and "host.preflight" in err
    assert not (tmp_path / "runs").exists()  # nothing was written


def test_resume_against_a_dead_host_leaves_the_run_as_it_was(tmp_path, registry, capsys, server):
    recipe = write_recipe(tmp_path, host=openai_host(server.base_url), n_tasks=4)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--limit", "2")
    assert code == 0, err
    run_dir = next((tmp_path / "runs").iterdir())
    before = files_of(run_dir)
    server.stop()  # the server goes away between the two commands
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--resume", str(run_dir))
    assert code == 2 and f"cannot reach the model server at {server.base_url}/models" in err
    assert f"--resume {run_dir}" in err  # how to finish once it is up
    assert files_of(run_dir) == before


def test_preflight_can_be_turned_off(tmp_path, registry, capsys, closed_port):
    host = openai_host(f"http://127.0.0.1:{closed_port}/v1", preflight=False, stop_after_connection_failures=0,
                       max_retries=0)
    recipe = write_recipe(tmp_path, host=host, n_tasks=2)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 1 and "cannot reach the model server" not in err  # each episode tried, and failed, on its own
    results = [json.loads(line) for line in next((tmp_path / "runs").glob("*/results.jsonl")).read_text().splitlines()]
    assert [r["status"] for r in results] == ["error", "error"]
    assert "connection refused" in results[0]["reason"]


def test_validate_check_host(tmp_path, registry, capsys, server, closed_port):
    dead = write_recipe(tmp_path, name="dead.yaml", host=openai_host(f"http://127.0.0.1:{closed_port}/v1"))
    code, _, err = run_cli(capsys, "validate", str(dead))
    assert code == 0, err  # without the flag validate makes no request
    code, _, err = run_cli(capsys, "validate", str(dead), "--check-host")
    assert code == 2 and f"127.0.0.1:{closed_port}" in err and "connection refused" in err
    live = write_recipe(tmp_path, name="live.yaml", host=openai_host(server.base_url, model="not-served"))
    code, out, err = run_cli(capsys, "validate", str(live), "--check-host")
    assert code == 0, err
    assert f"host reachable at {server.base_url}/models" in out and "'not-served'" in err
    scripted = write_recipe(tmp_path, name="scripted.yaml")  # an in-process host: nothing to reach
    code, out, err = run_cli(capsys, "validate", str(scripted), "--check-host")
    assert code == 0 and "nothing to check" in out


# Circuit breaker ------------------------------------------------------------------------------------------------

async def test_the_breaker_stops_after_connection_failures_in_a_row(closed_port):
    host = make_host(f"http://127.0.0.1:{closed_port}/v1", stop_after_connection_failures=3, max_retries=10)
    with pytest.raises(HostUnreachable) as info:
        await host.generate(MESSAGES, [], GenerateContext())
    assert host.connection_failures == 3 and host.retries == 2  # not the 10 retries
    assert info.value.exit_code == 2 and info.value.aborts_run
    assert f"cannot reach http://127.0.0.1:{closed_port}/v1" in info.value.render()
    with pytest.raises(HostUnreachable):  # open: later requests fail at once, without trying again
        await host.generate(MESSAGES, [], GenerateContext())
    assert host.retries == 2
    await host.aclose()


async def test_attempts_in_flight_together_count_once(closed_port):
    host = make_host(f"http://127.0.0.1:{closed_port}/v1", stop_after_connection_failures=0, max_retries=0)
    outcomes = await asyncio.gather(*(host.generate(MESSAGES, [], GenerateContext()) for _ in range(6)),
                                    return_exceptions=True)
    await host.aclose()
    assert all(type(o) is HostError for o in outcomes)  # breaker off: each request fails on its own
    assert host.connection_failures == 1  # six failures at the same moment are one observation


async def test_a_reply_resets_the_count(server):
    host = make_host(server.base_url, stop_after_connection_failures=3)
    host.connection_failures = 2
    await host.generate(MESSAGES, [], GenerateContext())
    assert host.connection_failures == 0
    server.script.append(error(500, "busy"))  # an error status is a reply too: the server is there
    host.connection_failures = 2
    await host.generate(MESSAGES, [], GenerateContext())
    assert host.connection_failures == 0
    await host.aclose()


async def test_retries_spent_on_an_unreachable_server_stop_the_run_instead_of_failing_the_episode(closed_port):
    host = make_host(f"http://127.0.0.1:{closed_port}/v1", stop_after_connection_failures=5, max_retries=1)
    with pytest.raises(HostUnreachable):
        await host.generate(MESSAGES, [], GenerateContext())
    off = make_host(f"http://127.0.0.1:{closed_port}/v1", stop_after_connection_failures=0, max_retries=1)
    with pytest.raises(HostError) as info:
        await off.generate(MESSAGES, [], GenerateContext())
    assert not isinstance(info.value, HostUnreachable) and "gave up after 2 attempts" in str(info.value)
    await host.aclose()
    await off.aclose()


def test_ten_tasks_against_a_dead_host_without_preflight_record_nothing(tmp_path, registry, capsys, closed_port):
    url = f"http://127.0.0.1:{closed_port}/v1"
    recipe = write_recipe(tmp_path, host=openai_host(url, preflight=False), n_tasks=10)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet")
    assert code == 2 and f"cannot reach {url}" in err and "3 connection attempts in a row failed" in err
    run_dir = next((tmp_path / "runs").iterdir())
    assert not (run_dir / "results.jsonl").exists() or (run_dir / "results.jsonl").read_text() == ""
    assert "0 finished episodes kept" in err and f"--resume {run_dir}" in err
    assert "run stopped" in (run_dir / "events.log").read_text()
    assert json.loads((run_dir / "manifest.json").read_text())["ended"] is not None


def test_a_server_that_dies_mid_run_stops_it_and_resume_finishes(tmp_path, registry, capsys, server):
    requests = {"n": 0}

    async def dies_after_two_episodes(request, original=server._handle):
        if request.path.endswith("/chat/completions"):
            requests["n"] += 1
            if requests["n"] > 4:  # two episodes of two turns each, then the server goes away
                server._server.close()  # stops listening: new connections are refused
                return None  # and this request's connection is dropped unanswered
        return await original(request)

    server.handler = dies_after_two_episodes
    port = server.port
    recipe = write_recipe(tmp_path, host=openai_host(server.base_url), n_tasks=5)
    code, _, err = run_cli(capsys, "apply", str(recipe), "--quiet", "--workers", "1")
    assert code == 2 and f"cannot reach {server.base_url}" in err
    run_dir = next((tmp_path / "runs").iterdir())
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [(r["qid"], r["status"]) for r in results] == [("q0", "completed"), ("q1", "completed")]
    assert "2 finished episodes kept" in err
    command = err.split("finish the run with: ", 1)[1].strip().splitlines()[0]
    assert command.startswith("clinseek apply ") and f"--resume {run_dir}" in command

    revived = FakeOpenAIServer(default=finish_after_echo)
    revived.port = port  # the same address, so the recipe (and its hash) is the same
    revived.start()
    try:
        code, _, err = run_cli(capsys, *shlex.split(command)[1:], "--quiet")
    finally:
        revived.stop()
    assert code == 0, err
    results = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert sorted(r["qid"] for r in results) == ["q0", "q1", "q2", "q3", "q4"]  # each exactly once
    assert all(r["status"] == "completed" for r in results)
    trajectories = (run_dir / "trajectories.jsonl").read_text().splitlines()
    assert len(trajectories) == 5  # the episode in flight at the stop was not recorded


def test_breaker_options_stay_out_of_the_cache_key():
    a = make_host("http://127.0.0.1:1/v1")
    b = make_host("http://127.0.0.1:1/v1", preflight=False, stop_after_connection_failures=9)
    assert a.cache_identity() == b.cache_identity()


def test_a_dropped_connection_is_not_a_connection_failure(server):
    async def drop(request):
        if request.path.endswith("/chat/completions") and not drop.done:
            drop.done = True
            return None
        return Reply(200, {"id": "x", "choices": [{"message": {"role": "assistant", "content": "ok"}}]})

    drop.done = False
    server.handler = drop

    async def go():
        host = make_host(server.base_url, stop_after_connection_failures=1)
        try:
            return (await host.generate(MESSAGES, [], GenerateContext())).content, host.connection_failures
        finally:
            await host.aclose()

    assert asyncio.run(go()) == ("ok", 0)
