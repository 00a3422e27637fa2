"""The OpenAI-compatible host against a local server speaking the chat-completions wire format (official SDK)."""
from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.http import Reply  # noqa: E402
from fake_servers.openai_server import (FakeOpenAIServer, Hang, completion, error, malformed,  # noqa: E402
                                        tool_call)

from clinseek.hosts.base import GenerateContext  # noqa: E402
from clinseek.hosts.errors import HostError, HostRequestRejected  # noqa: E402
from clinseek.hosts.openai_host import OpenAIConfig, OpenAIHost  # noqa: E402

TOOLS = [
    {"name": "ehr_sql", "description": "Run SQL.", "parameters": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
    {"name": "finish", "description": "Answer.", "parameters": {
        "type": "object", "properties": {"answer": {"type": "array", "items": {"type": "string"}}}}},
]
MESSAGES = [{"role": "system", "content": "You are careful."}, {"role": "user", "content": "Is the patient ok?"}]


@pytest.fixture
def server():
    s = FakeOpenAIServer().start()
    yield s
    s.stop()


def make_host(server, **overrides) -> OpenAIHost:
    options = {"provider": "openai", "base_url": server.base_url, "model": "fake-model", "api_key": "sk-secret-123",
               "backoff_base_s": 0.01, **overrides}
    host = OpenAIHost(OpenAIConfig.model_validate(options))
    host.waits = []

    async def record_sleep(seconds):
        host.waits.append(seconds)

    host._sleep = record_sleep
    return host


async def test_native_tool_calls_several_per_turn_with_usage_and_id(server):
    server.script.append(completion(None, [tool_call("ehr_sql", {"query": "SELECT 1"}, "call_a"),
                                           tool_call("ehr_sql", {"query": "SELECT 2"}, "call_b")],
                                    prompt_tokens=120, completion_tokens=30, cached_tokens=64))
    host = make_host(server, temperature=0.2, top_p=0.9, seed=7, max_tokens=256,
                     extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert [(c.id, c.name, c.arguments, c.error) for c in r.tool_calls] == [
        ("call_a", "ehr_sql", {"query": "SELECT 1"}, None), ("call_b", "ehr_sql", {"query": "SELECT 2"}, None)]
    assert (r.usage.input_tokens, r.usage.output_tokens, r.usage.cached_tokens) == (120, 30, 64)
    assert r.response_id.startswith("chatcmpl-") and r.finish_reason == "tool_calls"
    assert r.latency_s > 0 and not r.cached
    body = server.bodies()[0]
    assert body["model"] == "fake-model" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.2 and body["top_p"] == 0.9 and body["seed"] == 7 and body["max_tokens"] == 256
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert [t["function"]["name"] for t in body["tools"]] == ["ehr_sql", "finish"]
    assert body["tools"][0]["function"]["parameters"]["required"] == ["query"]
    assert server.requests[0].headers["authorization"] == "Bearer sk-secret-123"


async def test_history_with_tool_calls_and_results_is_sent_in_wire_format(server):
    host = make_host(server)
    history = MESSAGES + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "call_1", "name": "ehr_sql", "arguments": {"query": "SELECT 1"}}]},
        {"role": "tool", "tool_call_id": "call_1", "name": "ehr_sql", "content": "1 row", "evidence_id": "E1",
         "truncated": False, "is_error": False},
    ]
    r = await host.generate(history, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "plain answer" and r.tool_calls == []
    sent = server.bodies()[0]["messages"]
    assert sent[2] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {"name": "ehr_sql", "arguments": '{"query": "SELECT 1"}'}}]}
    assert sent[3] == {"role": "tool", "tool_call_id": "call_1", "content": "1 row"}


async def test_tool_calls_written_as_text_are_recovered(server):
    text = ('Let me check.\n<tool_call>\n{"name": "ehr_sql", "arguments": {"query": "SELECT 3"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "finish", "arguments": {"answer": ["no"]}}\n</tool_call>')
    server.script.append(completion(text))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("ehr_sql", {"query": "SELECT 3"}),
                                                              ("finish", {"answer": ["no"]})]
    assert r.content == "Let me check."
    assert len({c.id for c in r.tool_calls}) == 2 and all(c.id.startswith("call_") for c in r.tool_calls)


async def test_text_tool_calls_can_be_turned_off(server):
    server.script.append(completion('<tool_call>{"name": "ehr_sql", "arguments": {}}</tool_call>'))
    host = make_host(server, text_tool_calls=False)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.tool_calls == [] and "<tool_call>" in r.content


async def test_invalid_tool_arguments_keep_raw_text_and_explain(server):
    server.script.append(completion(None, [tool_call("ehr_sql", '{"query": "SELECT 1"', "c1"),
                                           tool_call("ehr_sql", '["SELECT 1"]', "c2")]))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    broken, listed = r.tool_calls
    assert broken.raw_arguments == '{"query": "SELECT 1"' and "not valid JSON" in broken.error
    assert broken.arguments == {}
    assert "JSON object" in listed.error and listed.raw_arguments == '["SELECT 1"]'


async def test_429_honours_retry_after_then_succeeds(server):
    server.script.extend([error(429, "slow down", retry_after="3"), error(429, "slow down", retry_after="1"),
                          completion("done")])
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "done" and len(server.requests) == 3
    assert 3.0 <= host.waits[0] <= 3.31 and 1.0 <= host.waits[1] <= 1.11
    assert host.retries == 2


async def test_500s_back_off_exponentially_then_succeed(server):
    server.script.extend([error(500), error(502), error(503), completion("ok")])
    host = make_host(server, backoff_base_s=1.0, backoff_max_s=100)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "ok"
    # jitter keeps each wait in [d/2, d] with d = 1, 2, 4
    assert [0.5 <= host.waits[0] <= 1, 1 <= host.waits[1] <= 2, 2 <= host.waits[2] <= 4] == [True] * 3


async def test_persistent_server_errors_raise_host_error_after_retries(server):
    server.default = lambda request: error(500, "boom")
    host = make_host(server, max_retries=2)
    with pytest.raises(HostError) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 3
    assert "HTTP 500" in str(info.value) and "gave up after 3 attempts" in str(info.value)
    assert not isinstance(info.value, HostRequestRejected)


async def test_timeouts_are_retried(server):
    server.script.extend([Hang(2.0), completion("in time")])
    host = make_host(server, timeout_s=0.3)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.content == "in time" and len(host.waits) == 1


async def test_timeout_every_time_says_so(server):
    server.default = lambda request: Reply(200, b"")  # never used: every request hangs
    server.script.extend([Hang(2.0), Hang(2.0)])
    host = make_host(server, timeout_s=0.2, max_retries=1)
    with pytest.raises(HostError, match="timeout"):
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()


async def test_malformed_json_body_is_retried_then_reported(server):
    server.script.extend([malformed(), completion("fine")])
    host = make_host(server)
    assert (await host.generate(MESSAGES, TOOLS, GenerateContext())).content == "fine"
    server.default = lambda request: malformed()
    host2 = make_host(server, max_retries=1)
    with pytest.raises(HostError, match="malformed reply"):
        await host2.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    await host2.aclose()


async def test_reply_without_choices_is_malformed(server):
    server.default = lambda request: Reply(200, {"id": "x", "object": "chat.completion", "choices": []})
    host = make_host(server, max_retries=0)
    with pytest.raises(HostError, match="no choices"):
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()


async def test_bad_key_is_not_retried_and_never_echoed(server):
    server.default = lambda request: error(401, "Incorrect API key provided: sk-secret-123")
    host = make_host(server)
    with pytest.raises(HostRequestRejected) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 1 and host.waits == []
    text = info.value.render()
    assert "sk-secret-123" not in text and "HTTP 401" in text and "api_key" in text


async def test_unknown_model_is_not_retried_and_hints_at_the_model(server):
    server.default = lambda request: error(404, "The model `nope` does not exist.")
    host = make_host(server, model="nope")
    with pytest.raises(HostRequestRejected) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 1
    assert "host.model ('nope')" in info.value.render() and "/models" in info.value.render()


async def test_concurrency_limit_holds(server):
    server.delay_s = 0.05
    seen = {"now": 0, "peak": 0}

    def count(request):
        return completion("x")

    async def counting_handler(request, original=server._handle):
        seen["now"] += 1
        seen["peak"] = max(seen["peak"], seen["now"])
        try:
            return await original(request)
        finally:
            seen["now"] -= 1

    server.handler = counting_handler
    host = make_host(server, max_concurrency=3)
    results = await asyncio.gather(*(host.generate(MESSAGES, TOOLS, GenerateContext()) for _ in range(10)))
    await host.aclose()
    assert len(results) == 10 and all(r.content == "plain answer" for r in results)
    assert seen["peak"] == 3 and host.limiter.peak_in_flight == 3


async def test_tool_names_a_provider_refuses_are_mapped_both_ways(server):
    tools = [{"name": "kb.search", "description": "Search.", "parameters": {"type": "object", "properties": {}}}]
    server.script.append(completion(None, [tool_call("kb_search", {}, "c9")]))
    host = make_host(server)
    history = MESSAGES + [{"role": "assistant", "content": None,
                           "tool_calls": [{"id": "c0", "name": "kb.search", "arguments": {}}]},
                          {"role": "tool", "tool_call_id": "c0", "name": "kb.search", "content": "none"}]
    r = await host.generate(history, tools, GenerateContext())
    await host.aclose()
    body = server.bodies()[0]
    assert body["tools"][0]["function"]["name"] == "kb_search"
    assert body["messages"][2]["tool_calls"][0]["function"]["name"] == "kb_search"
    assert r.tool_calls[0].name == "kb.search"


async def test_reasoning_content_is_kept_for_the_record(server):
    server.script.append(completion("42", extra_message={"reasoning_content": "thinking it over"}))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert r.provider_data["reasoning_content"] == "thinking it over"


def test_site_local_follows_the_address_unless_set():
    def host(**kw):
        return OpenAIHost(OpenAIConfig.model_validate({"provider": "openai", "model": "m", **kw}))

    assert host(base_url="http://127.0.0.1:8000/v1").site_local
    assert host(base_url="http://10.1.2.3/v1").site_local
    assert host(base_url="http://vllm.localhost:8000/v1").site_local
    assert not host().site_local  # api.openai.com
    assert not host(base_url="https://api.together.xyz/v1").site_local
    assert host(base_url="https://gpu.example-hospital.org/v1", site_local=True).site_local
    assert not host(base_url="http://127.0.0.1/v1", site_local=False).site_local


def test_describe_never_shows_the_key_and_config_refuses_unknown_keys():
    host = OpenAIHost(OpenAIConfig.model_validate({"provider": "openai", "model": "m", "api_key": "sk-zzz999",
                                                   "base_url": "http://localhost:8000/v1"}))
    described = host.describe()
    assert described == {"provider": "openai", "model": "m", "base_url": "http://localhost:8000/v1",
                         "site_local": True}
    assert "sk-zzz999" not in json.dumps(host.config.model_dump(mode="json"))
    with pytest.raises(Exception, match="extra"):
        OpenAIConfig.model_validate({"provider": "openai", "model": "m", "temprature": 0.1})


async def test_unparsed_arguments_are_replayed_as_the_model_wrote_them(server):
    host = make_host(server)
    history = MESSAGES + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "name": "ehr_sql", "arguments": {"_raw": '{"query": SELECT'}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "ehr_sql", "content": "Error: not valid JSON",
         "is_error": True},
    ]
    await host.generate(history, TOOLS, GenerateContext())
    await host.aclose()
    sent = server.bodies()[0]["messages"][2]["tool_calls"][0]["function"]["arguments"]
    assert sent == '{"query": SELECT'


async def test_many_concurrent_requests_spread_over_small_pools(server):
    server.delay_s = 0.05
    host = make_host(server, max_concurrency=40)
    results = await asyncio.gather(*(host.generate(MESSAGES, TOOLS, GenerateContext()) for _ in range(40)))
    assert len(host._shards) == 3 and host._shard_load == [0, 0, 0]
    await host.aclose()
    assert all(r.content == "plain answer" for r in results) and host.limiter.peak_in_flight == 40
    assert server.connections >= 40  # every request had its own connection, none queued behind another


async def test_requests_per_minute_limit_waits_for_the_window(server):
    host = make_host(server, requests_per_minute=2)
    clock = {"now": 0.0}
    waits = []

    async def fake_sleep(seconds):
        waits.append(seconds)
        clock["now"] += seconds

    host.limiter.clock = lambda: clock["now"]
    host.limiter.sleep = fake_sleep
    for _ in range(3):
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 3 and len(waits) == 1 and 59.9 <= waits[0] <= 60.1


async def test_think_block_in_content_is_split_and_calls_inside_it_are_ignored(server):
    server.script.append(completion('<think>maybe <tool_call>{"name": "finish", "arguments": {}}</tool_call>'
                                    '</think>\n<tool_call>{"name": "ehr_sql", "arguments": {"query": "q"}}'
                                    '</tool_call>'))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert [c.name for c in r.tool_calls] == ["ehr_sql"]
    assert r.provider_data["reasoning_content"].startswith("maybe") and r.content is None


async def test_retries_are_reported_as_run_warnings_without_the_key(server):
    from types import SimpleNamespace

    warnings = []
    server.script.extend([error(503, "busy for sk-secret-123"), completion("ok")])
    host = OpenAIHost(OpenAIConfig.model_validate({"provider": "openai", "base_url": server.base_url,
                                                   "model": "fake-model", "api_key": "sk-secret-123",
                                                   "backoff_base_s": 0.001}),
                      SimpleNamespace(warn=warnings.append, recipe_dir=None, cache_dir=None))
    assert (await host.generate(MESSAGES, TOOLS, GenerateContext())).content == "ok"
    await host.aclose()
    assert len(warnings) == 1 and "HTTP 503" in warnings[0] and "retry 1/6" in warnings[0]
    assert "sk-secret-123" not in warnings[0]


def _reply_with(message=None, **choice) -> Reply:
    return Reply(200, {"id": "chatcmpl-m", "object": "chat.completion",
                       "choices": [{"index": 0, "message": message, **choice}]})


@pytest.mark.parametrize("body, named", [
    (_reply_with(None), "choices[0].message is null"),
    (_reply_with("hello"), "choices[0].message is a string, not an object"),
    (_reply_with({"role": "assistant", "content": 5}), "choices[0].message.content is a number"),
    (_reply_with({"role": "assistant", "content": [{"type": "text", "text": "x"}]}),
     "choices[0].message.content is a list"),
    (_reply_with({"role": "assistant", "content": None, "tool_calls": "finish"}),
     "choices[0].message.tool_calls is a string, not a list"),
    (_reply_with({"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "function": None}]}),
     "choices[0].message.tool_calls[0] has no function"),
    (_reply_with({"role": "assistant", "content": None,
                  "tool_calls": [{"id": "c1", "function": {"name": "finish", "arguments": 7}}]}),
     "tool_calls[0].function.arguments is a number"),
    (_reply_with({"role": "assistant", "content": None,
                  "tool_calls": [{"id": "c1", "function": {"name": None, "arguments": "{}"}}]}),
     "tool_calls[0].function.name is null"),
    (Reply(200, {"id": "x", "choices": ["oops"]}), "choices[0] is a string, not an object"),
    (Reply(200, [1, 2]), "the reply is a list, not a JSON object"),
])
async def test_a_malformed_reply_fails_the_call_and_names_the_field(server, body, named):
    server.default = lambda request: body
    host = make_host(server, max_retries=1)
    with pytest.raises(HostError) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    # An episode error, not a rejected request: the run goes on with the other episodes.
    assert not isinstance(info.value, HostRequestRejected) and not getattr(info.value, "aborts_run", False)
    assert "malformed reply" in str(info.value) and named in str(info.value)
    assert len(server.requests) == 2  # retried like any malformed body


async def test_arguments_sent_as_an_object_and_odd_usage_are_accepted(server):
    server.script.append(Reply(200, {"id": "c", "choices": [{"message": {"role": "assistant", "content": None,
                         "tool_calls": [{"id": "t1", "function": {"name": "ehr_sql", "arguments": {"query": "q"}}}]},
                         "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": None, "completion_tokens": "3"}}))
    host = make_host(server)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert [(c.name, c.arguments) for c in r.tool_calls] == [("ehr_sql", {"query": "q"})]
    assert (r.usage.input_tokens, r.usage.output_tokens) == (0, 0)


async def test_an_unexpected_failure_ends_the_episode_not_the_run(server, monkeypatch):
    host = make_host(server)

    def broken(completion, tools):
        raise AttributeError("'NoneType' object has no attribute 'x'")

    monkeypatch.setattr(host, "parse_completion", broken)
    with pytest.raises(HostError) as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert not isinstance(info.value, HostRequestRejected) and "AttributeError" in str(info.value)


async def test_constrained_tool_calls_ask_the_server_for_required_calls(server):
    server.script.append(completion(None, [tool_call("finish", {"answer": ["yes"]})]))
    host = make_host(server, constrain_tool_calls=True)
    response = await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert response.tool_calls[0].name == "finish"
    body = server.bodies()[-1]
    assert body["tool_choice"] == "required" and len(body["tools"]) == 2
    assert make_host(server).build_request(MESSAGES, TOOLS).get("tool_choice") is None
    with pytest.raises(Exception, match="constrain_tool_calls needs tool_choice required"):
        OpenAIConfig.model_validate({"provider": "openai", "model": "m", "constrain_tool_calls": True,
                                     "tool_choice": "auto"})
    await host.aclose()
