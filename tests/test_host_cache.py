"""The response cache: what the key covers, hits, sharing across threads, and `clinseek cache`."""
from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from fake_servers.openai_server import FakeOpenAIServer, completion, tool_call  # noqa: E402

from clinseek.hosts.base import GenerateContext, HostResponse, ToolCall, Usage  # noqa: E402
from clinseek.hosts.cache import (ResponseCache, cache_key, default_cache_path, open_cache,  # noqa: E402
                                  resolve_cache_path)
from clinseek.hosts.cache_cli import cache as cache_cli  # noqa: E402
from clinseek.hosts.openai_host import OpenAIConfig, OpenAIHost  # noqa: E402

TOOLS = [{"name": "ehr_sql", "description": "Run SQL.", "parameters": {"type": "object", "properties": {}}}]
MESSAGES = [{"role": "user", "content": "question"}]


@pytest.fixture
def server():
    counter = {"n": 0}

    def numbered(request):
        counter["n"] += 1
        return completion(f"reply {counter['n']}", prompt_tokens=100, completion_tokens=10)

    s = FakeOpenAIServer(default=numbered).start()
    yield s
    s.stop()


def host_for(server, path, **overrides):
    options = {"provider": "openai", "base_url": server.base_url, "model": "fake-model", "cache": str(path),
               **overrides}
    return OpenAIHost(OpenAIConfig.model_validate(options))


async def test_hit_returns_the_original_reply_and_usage_without_calling_the_server(server, tmp_path):
    path = tmp_path / "r.sqlite"
    host = host_for(server, path)
    first = await host.generate(MESSAGES, TOOLS, GenerateContext())
    again = await host_for(server, path).generate(MESSAGES, TOOLS, GenerateContext())
    await host.aclose()
    assert len(server.requests) == 1
    assert not first.cached and again.cached
    assert again.content == first.content == "reply 1"
    assert again.usage.as_dict() == first.usage.as_dict() == {"input_tokens": 100, "output_tokens": 10,
                                                              "cached_tokens": 0}
    assert again.response_id == first.response_id


@pytest.mark.parametrize("change", [
    {"model": "other-model"}, {"temperature": 0.7}, {"top_p": 0.5}, {"seed": 3}, {"max_tokens": 99},
    {"extra_body": {"chat_template_kwargs": {"enable_thinking": True}}}, {"stop": ["</s>"]},
])
async def test_changing_any_reply_deciding_option_misses(server, tmp_path, change):
    path = tmp_path / "r.sqlite"
    base = host_for(server, path)
    await base.generate(MESSAGES, TOOLS, GenerateContext())
    changed = host_for(server, path, **change)
    r = await changed.generate(MESSAGES, TOOLS, GenerateContext())
    assert not r.cached and len(server.requests) == 2
    # options that do not change the reply still hit
    same = host_for(server, path, timeout_s=5, max_retries=1, max_concurrency=2, api_key="k2")
    assert (await same.generate(MESSAGES, TOOLS, GenerateContext())).cached


async def test_messages_tools_run_index_and_address_are_in_the_key(server, tmp_path):
    path = tmp_path / "r.sqlite"
    host = host_for(server, path)
    await host.generate(MESSAGES, TOOLS, GenerateContext(run_index=0))
    assert not (await host.generate([{"role": "user", "content": "other"}], TOOLS, GenerateContext())).cached
    assert not (await host.generate(MESSAGES, [], GenerateContext())).cached
    assert not (await host.generate(MESSAGES, TOOLS, GenerateContext(run_index=1))).cached
    moved = host_for(server, path, base_url=server.base_url.replace("127.0.0.1", "localhost"))
    assert not (await moved.generate(MESSAGES, TOOLS, GenerateContext())).cached
    assert (await host.generate(MESSAGES, TOOLS, GenerateContext(run_index=1))).cached
    assert len(server.requests) == 5


async def test_tool_calls_and_provider_data_round_trip(server, tmp_path):
    server.script.append(completion(None, [tool_call("ehr_sql", '{"bad"', "c1")],
                                    extra_message={"reasoning_content": "hmm"}))
    path = tmp_path / "r.sqlite"
    first = await host_for(server, path).generate(MESSAGES, TOOLS, GenerateContext())
    hit = await host_for(server, path).generate(MESSAGES, TOOLS, GenerateContext())
    assert hit.cached and hit.tool_calls[0].id == "c1" and hit.tool_calls[0].raw_arguments == '{"bad"'
    assert hit.tool_calls[0].error == first.tool_calls[0].error and hit.provider_data == {"reasoning_content": "hmm"}


def test_cache_is_safe_across_threads(tmp_path):
    store = open_cache(tmp_path / "t.sqlite")
    assert open_cache(tmp_path / "t.sqlite") is store

    def work(n):
        for i in range(50):
            key = f"{n}-{i}"
            store.put(key, HostResponse(content=key, tool_calls=[ToolCall("c", "x", {"i": i})],
                                        usage=Usage(i, 1, 0)), "openai", "m")
            assert store.get(key).content == key

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.stats()["entries"] == 300


def test_key_is_order_independent_for_dict_keys_but_not_for_messages():
    a = cache_key({"provider": "openai", "model": "m"}, [{"role": "user", "content": "x"}], [], 0)
    b = cache_key({"model": "m", "provider": "openai"}, [{"content": "x", "role": "user"}], [], 0)
    assert a == b
    two = [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]
    assert cache_key({}, two, [], 0) != cache_key({}, list(reversed(two)), [], 0)


def test_cache_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("CLINSEEK_CACHE", str(tmp_path / "c"))
    assert default_cache_path() == tmp_path / "c" / "responses.sqlite"
    ctx = SimpleNamespace(cache_dir=tmp_path / "engine", recipe_dir=tmp_path / "recipes")
    assert resolve_cache_path(True, ctx) == tmp_path / "engine" / "responses.sqlite"
    assert resolve_cache_path("mine.sqlite", ctx) == tmp_path / "recipes" / "mine.sqlite"
    assert resolve_cache_path(False, ctx) is None


def test_cli_stats_and_clear(tmp_path):
    path = tmp_path / "cli.sqlite"
    store = ResponseCache(path)
    for i in range(3):
        store.put(f"k{i}", HostResponse(content="a"), "openai", "qwen")
    store.put("k9", HostResponse(content="b"), "anthropic", "claude")
    store.close()
    runner = CliRunner()
    out = runner.invoke(cache_cli, ["stats", "--path", str(path), "--json"])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["entries"] == 4 and info["by_model"][0] == {"provider": "openai", "model": "qwen", "entries": 3}
    text = runner.invoke(cache_cli, ["stats", "--path", str(path)]).output
    assert "4 entries" in text and "claude" in text
    out = runner.invoke(cache_cli, ["clear", "--path", str(path), "--provider", "anthropic"])
    assert "removed 1 entry" in out.output
    out = runner.invoke(cache_cli, ["clear", "--path", str(path)])
    assert "removed 3 entries" in out.output
    assert json.loads(runner.invoke(cache_cli, ["stats", "--path", str(path), "--json"]).output)["entries"] == 0
    missing = runner.invoke(cache_cli, ["stats", "--path", str(tmp_path / "none.sqlite")])
    assert missing.exit_code == 0 and "0 entries" in missing.output


def test_cli_is_reachable_from_clinseek(tmp_path):
    from clinseek.cli import cli

    out = CliRunner().invoke(cli, ["cache", "stats", "--path", str(tmp_path / "x.sqlite")])
    assert out.exit_code == 0 and "no cache yet" in out.output
