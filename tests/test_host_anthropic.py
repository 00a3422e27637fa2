"""The Anthropic host against a local server speaking the Messages API wire format (official SDK)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.anthropic_server import (FakeAnthropicServer, error, message, text, thinking,  # noqa: E402
                                           tool_use)
from fake_servers.http import Reply  # noqa: E402
from fake_servers.openai_server import Hang  # noqa: E402

from clinseek.hosts.anthropic_host import AnthropicConfig, AnthropicHost  # noqa: E402
from clinseek.hosts.base import GenerateContext, Price  # noqa: E402
from clinseek.hosts.errors import HostError, HostRequestRejected  # noqa: E402

TOOLS = [
    {"name": "ehr_sql", "description": "Run SQL.", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
    {"name": "finish", "description": "Answer.", "parameters": {"type": "object", "properties": {}}},
]
MESSAGES = [{"role": "system", "content": "You are careful."}, {"role": "user", "content": "Is the patient ok?"}]


@pytest.fixture
def server():
    s = FakeAnthropicServer().start()
    yield s
    s.stop()


def make_host(server, **overrides) -> AnthropicHost:
    options = {"provider": "anthropic", "base_url": server.url, "model": "claude-test", "api_key": "sk-ant-secret",
               "backoff_base_s": 0.01, **overrides}
    host = AnthropicHost(AnthropicConfig.model_validate(options))
    host.waits = []

    async def record(seconds):
        host.waits.append(seconds)

    host._sleep = record
    return host


async def test_tool_use_blocks_usage_and_request_shape(server):
    server.script.append(message(text("Checking."), tool_use("ehr_sql", {"query": "SELECT 1"}, "toolu_a"),
                                 tool_use("ehr_sql", {"query": "SELECT 2"}, "toolu_b"),
                                 input_tokens=50, output_tokens=12, cache_read=1000, cache_creation=200))
    host = make_host(server, temperature=0.3, max_tokens=512, prompt_cache=True, stop=["STOP"])
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "Checking."
    assert [(c.id, c.name, c.arguments) for c in r.tool_calls] == [
        ("toolu_a", "ehr_sql", {"query": "SELECT 1"}), ("toolu_b", "ehr_sql", {"query": "SELECT 2"})]
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_tokens) == (1250, 12, 1000)
    assert r.response_id.startswith("msg_") and r.finish_reason == "tool_use" and r.latency_s > 0
    # cached tokens are priced at the cached rate
    assert r.usage.cost(Price(input=3, output=15, cached_input=0.3)) == pytest.approx(
        (250 * 3 + 1000 * 0.3 + 12 * 15) / 1e6)
    body = server.bodies()[0]
    assert body["system"] == [{"type": "text", "text": "You are careful.", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Is the patient ok?",
                                                              "cache_control": {"type": "ephemeral"}}]}]
    assert body["tools"][0] == {"name": "ehr_sql", "description": "Run SQL.",
                                "input_schema": TOOLS[0]["parameters"]}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in str(MESSAGES) + str(TOOLS)  # the canonical records are not touched
    assert body["max_tokens"] == 512 and body["temperature"] == 0.3 and body["stop_sequences"] == ["STOP"]
    headers = server.requests[0].headers
    # the key travels as x-api-key (or as a bearer token in recent SDKs)
    assert "sk-ant-secret" in (headers.get("x-api-key", ""), headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in headers


async def test_thinking_blocks_are_kept_and_replayed_first(server):
    server.script.append(message(thinking("Need labs first.", "sig-1"), tool_use("ehr_sql", {"query": "q"}, "t1")))
    host = make_host(server, thinking={"type": "enabled", "budget_tokens": 1024})
    first = await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert first.provider_data["anthropic_thinking"] == [
        {"type": "thinking", "thinking": "Need labs first.", "signature": "sig-1"}]
    history = MESSAGES + [
        {"role": "assistant", "content": first.content, "provider_data": first.provider_data,
         "tool_calls": [{"id": c.id, "name": c.name, "arguments": c.arguments} for c in first.tool_calls]},
        {"role": "tool", "tool_call_id": "t1", "name": "ehr_sql", "content": "no rows", "is_error": False},
    ]
    await host.generate(history, TOOLS, GenerateContext())
    await host.aclose()
    sent = server.bodies()[1]
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assistant = sent["messages"][1]
    assert assistant["role"] == "assistant"
    assert [b["type"] for b in assistant["content"]] == ["thinking", "tool_use"]
    assert assistant["content"][0]["signature"] == "sig-1"
    assert sent["messages"][2] == {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t1", "content": "no rows"}]}


async def test_consecutive_tool_results_and_a_user_note_share_one_user_turn(server):
    host = make_host(server)
    history = MESSAGES + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "a", "name": "ehr_sql", "arguments": {"query": "1"}},
            {"id": "b", "name": "ehr_sql", "arguments": {"query": "2"}}]},
        {"role": "tool", "tool_call_id": "a", "name": "ehr_sql", "content": "ok"},
        {"role": "tool", "tool_call_id": "b", "name": "ehr_sql", "content": "refused: not a SELECT",
         "is_error": True},
        {"role": "user", "content": "Two turns left."},
    ]
    await host.generate(history, TOOLS, GenerateContext())
    await host.aclose()
    turns = server.bodies()[0]["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "ok"},
        {"type": "tool_result", "tool_use_id": "b", "content": "refused: not a SELECT", "is_error": True},
        {"type": "text", "text": "Two turns left."}]


async def test_tool_names_are_mapped_both_ways(server):
    tools = [{"name": "kb.search", "description": "d", "parameters": {"type": "object", "properties": {}}}]
    server.script.append(message(tool_use("kb_search", {"q": "x"})))
    host = make_host(server)
    r = await host.generate(MESSAGES, tools, GenerateContext())
    await host.aclose()
    assert server.bodies()[0]["tools"][0]["name"] == "kb_search" and r.tool_calls[0].name == "kb.search"


async def test_non_object_tool_input_becomes_an_error_the_model_sees(server):
    server.script.append(message(tool_use("ehr_sql", "SELECT 1")))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.tool_calls[0].error and r.tool_calls[0].raw_arguments == "SELECT 1"


async def test_429_and_529_are_retried_honouring_retry_after(server):
    server.script.extend([error(429, "rate_limit_error", "slow", retry_after="2"),
                          error(529, "overloaded_error", "busy"), message(text("ok"))])
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "ok" and len(server.requests) == 3 and 2.0 <= host.waits[0] <= 2.21


async def test_timeout_then_success(server):
    server.script.extend([Hang(2.0), message(text("ok"))])
    host = make_host(server, timeout_s=0.3)
    assert (await host.generate(MESSAGES, TOOLS, GenerateContext())).content == "ok"
    await host.aclose()


async def test_malformed_body_and_persistent_500(server):
    server.script.append(Reply(200, '{"id": "msg_1", "content": [', {"content-type": "application/json"}))
    host = make_host(server, max_retries=2)
    assert (await host.generate(MESSAGES, TOOLS, GenerateContext())).content == "plain answer"
    server.default = lambda request: error(500, "api_error", "internal")
    with pytest.raises(HostError, match="gave up after 3 attempts"):
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()


async def test_bad_key_is_rejected_once_without_echo(server):
    server.default = lambda request: error(401, "authentication_error", "invalid x-api-key sk-ant-secret")
    host = make_host(server)
    with pytest.raises(HostRequestRejected) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 1 and "sk-ant-secret" not in info.value.render()
    assert "ANTHROPIC_API_KEY" in info.value.render()


async def test_missing_key_says_how_to_set_it(server, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    host = AnthropicHost(AnthropicConfig.model_validate({"provider": "anthropic", "model": "claude-test",
                                                         "base_url": server.url}))
    with pytest.raises(HostRequestRejected, match="no API key"):
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert server.requests == []


def test_public_api_is_outside_the_site_unless_a_local_gateway():
    def host(**kw):
        return AnthropicHost(AnthropicConfig.model_validate({"provider": "anthropic", "model": "m", **kw}))

    assert not host().site_local
    assert host(base_url="http://127.0.0.1:9000").site_local
    assert host(site_local=True).site_local
    assert host().describe() == {"provider": "anthropic", "model": "m", "base_url": None, "site_local": False}


async def test_preflight_and_the_breaker_for_anthropic(server):
    import socket

    from clinseek.hosts.errors import HostUnreachable

    seen = []

    async def handler(request, original=server._handle):
        seen.append(request)
        return await original(request)

    server.handler = handler
    check = make_host(server).preflight()  # the fake has no /v1/models: a live server all the same
    assert check.reachable and check.status == 404 and "/v1/models" in check.notes[0]
    assert seen[0].path == "/v1/models" and seen[0].headers["x-api-key"] == "sk-ant-secret"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    dead = make_host(server, base_url=f"http://127.0.0.1:{port}")
    assert not dead.preflight().reachable
    with pytest.raises(HostUnreachable, match=f"cannot reach http://127.0.0.1:{port}"):
        await dead.generate(MESSAGES, TOOLS, GenerateContext())
    await dead.aclose()


async def test_a_text_block_without_text_is_a_malformed_reply(server):
    server.default = lambda request: Reply(200, {"id": "m", "type": "message", "role": "assistant",
                                                 "content": [{"type": "text", "text": None}],
                                                 "usage": {"input_tokens": 1, "output_tokens": 1}})
    host = make_host(server, max_retries=0)
    with pytest.raises(HostError, match=r"content\[0\].text is not a string") as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert not isinstance(info.value, HostRequestRejected)


def test_tool_choice_is_sent_with_or_without_the_prompt_cache():
    for cache in (False, True):
        host = AnthropicHost(AnthropicConfig.model_validate({
            "provider": "anthropic", "model": "m", "prompt_cache": cache, "tool_choice": {"type": "any"}}))
        assert host.build_request(MESSAGES, TOOLS)["tool_choice"] == {"type": "any"}
        assert "tool_choice" not in host.build_request(MESSAGES, [])
