"""Secrets inside host.base_url (`http://user:${env:PW}@host/${env:TOKEN}/v1`) never leave the process: not in
run records, events.log, error reasons, host descriptions or stderr."""
from __future__ import annotations

import json
import re
import secrets as random_secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.openai_server import FakeOpenAIServer, completion, error, tool_call  # noqa: E402
from spine_fixtures import write_recipe  # noqa: E402

from clinseek.cli import main  # noqa: E402
from clinseek.hosts.openai_host import OpenAIConfig, OpenAIHost  # noqa: E402
from clinseek.recipe.interpolate import REF  # noqa: E402
from clinseek.redact import MIN_SECRET_LEN, add_secret, redact_text, substitute  # noqa: E402


def unique(prefix: str) -> str:
    return f"{prefix}{random_secrets.token_hex(6)}"


def test_url_passwords_and_registered_secrets_are_masked():
    assert redact_text("GET http://alice:pa55-word@gpu:8000/v1 failed") == "GET http://alice:***@gpu:8000/v1 failed"
    assert redact_text("https://ghp-token-abc@gateway/v1") == "https://***@gateway/v1"
    assert redact_text("http://gpu:8000/v1, mail me@example.org") == "http://gpu:8000/v1, mail me@example.org"
    value = unique("tok-")
    add_secret(value)
    assert redact_text(json.dumps({"reason": f"refused {value}", "n": [f"x{value}y", 3]})) == \
        json.dumps({"reason": "refused ***", "n": ["x***y", 3]})
    # On JSON text (how records are written) a match never runs from one string into the next.
    assert redact_text(json.dumps({"u": "http://a:pw-1@h/v1", "e": "me@x", "f": "http://h/v1", "g": "b@c"})) == \
        '{"u": "http://a:***@h/v1", "e": "me@x", "f": "http://h/v1", "g": "b@c"}'


def test_short_values_are_never_registered():
    short = "7" * (MIN_SECRET_LEN - 1)
    add_secret(short)
    assert redact_text(f"creatinine {short} mg/dL") == f"creatinine {short} mg/dL"  # data is not rewritten


def test_interpolation_registers_what_lands_in_a_url_credential_part_or_under_a_secret_name():
    values = {"PW": unique("pw-"), "HOST": "gpu-node-17", "PORT": "8000", "PREFIX": "deployment-a",
              "SAS": unique("sig-"), "ROUTE_TOKEN": unique("rt-")}
    found: set[str] = set()
    text = ("http://svc:${env:PW}@${env:HOST}:${env:PORT}/${env:PREFIX}/${env:ROUTE_TOKEN}/v1"
            "?sig=${env:SAS}")
    out = substitute(REF, text, lambda m: values[m.group(2)], found)
    assert out == (f"http://svc:{values['PW']}@gpu-node-17:8000/deployment-a/{values['ROUTE_TOKEN']}/v1"
                   f"?sig={values['SAS']}")
    assert found == {values["PW"], values["SAS"], values["ROUTE_TOKEN"]}  # host, port and plain path stay readable
    assert redact_text(out) == "http://svc:***@gpu-node-17:8000/deployment-a/***/v1?sig=***"


def test_host_description_and_where_never_show_a_url_password():
    host = OpenAIHost(OpenAIConfig.model_validate({"provider": "openai", "model": "m",
                                                   "base_url": "http://user:hunter2-x@127.0.0.1:8000/v1"}))
    assert host.describe()["base_url"] == "http://user:***@127.0.0.1:8000/v1"
    assert "hunter2-x" not in host.where() and "hunter2-x" not in host.endpoint()


@pytest.fixture
def closed_port() -> int:
    from clinseek.testing import closed_port as free_port

    return free_port()


def test_a_secret_in_base_url_is_in_no_file_of_the_run_and_not_on_stderr(tmp_path, registry, capsys, monkeypatch,
                                                                        closed_port):
    secret, token = unique("SECRETVALUE-"), unique("route-")
    monkeypatch.setenv("CLINSEEK_TEST_PW", secret)
    monkeypatch.setenv("CLINSEEK_TEST_ROUTE_TOKEN", token)
    replies = {"n": 0}

    def quotes_the_url_back_then_works(request):
        replies["n"] += 1
        if replies["n"] <= 2:  # the first episode: a busy server that echoes its own address, twice (no more retries)
            return error(503, f"overloaded: upstream http://user:{secret}@gpu/{token}/v1 is busy (as {secret})")
        if request.json()["messages"][-1]["role"] == "tool":
            return completion(None, [tool_call("finish", {"answer": ["yes"]})])
        return completion(None, [tool_call("notes_echo", {"text": "hi"})])

    server = FakeOpenAIServer(default=quotes_the_url_back_then_works).start()
    printed: list[str] = []

    def run_cli(*args) -> int:
        with pytest.raises(SystemExit) as info:
            main(list(args))
        out = capsys.readouterr()
        printed.extend([out.out, out.err])
        return info.value.code

    def url(port: int) -> str:
        return f"http://user:${{env:CLINSEEK_TEST_PW}}@127.0.0.1:{port}/${{env:CLINSEEK_TEST_ROUTE_TOKEN}}/v1"

    def host(port: int, **options) -> dict:
        return {"provider": "openai", "base_url": url(port), "model": "fake-model", "max_retries": 1,
                "backoff_base_s": 0.001, **options}

    try:
        live = write_recipe(tmp_path, name="live.yaml", host=host(server.port), n_tasks=3)
        assert run_cli("apply", str(live), "--workers", "1") == 1  # q0 ended in error; its reason names the host
    finally:
        server.stop()
    dead = write_recipe(tmp_path, name="dead.yaml", host=host(closed_port), n_tasks=3)
    assert run_cli("validate", str(dead), "--check-host") == 2
    assert run_cli("apply", str(dead)) == 2  # the pre-flight stops it
    assert run_cli("apply", str(dead), "--set", "host.preflight=false") == 2  # the breaker stops it

    runs = [p for p in (tmp_path / "runs").iterdir()]
    assert len(runs) == 2
    live_run = next(p for p in runs if (p / "results.jsonl").exists())
    results = [json.loads(line) for line in (live_run / "results.jsonl").read_text().splitlines()]
    assert results[0]["status"] == "error" and "HTTP 503" in results[0]["reason"]
    manifest = json.loads((live_run / "manifest.json").read_text())
    assert manifest["host"]["base_url"] == f"http://user:***@127.0.0.1:{server.port}/***/v1"
    assert "retry 1/1" in (live_run / "events.log").read_text()  # the retry warnings were written
    assert any("run stopped" in (p / "events.log").read_text() for p in runs)

    leaks = [str(p) for p in (tmp_path / "runs").rglob("*") if p.is_file()
             and re.search(f"{secret}|{token}".encode(), p.read_bytes())]
    assert leaks == []
    text = "\n".join(printed)
    assert "cannot reach the model server" in text and "retry 1/1" in text and "HTTP 503" in text
    assert secret not in text and token not in text
