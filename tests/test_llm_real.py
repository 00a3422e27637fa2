"""Real episodes with a real model: Qwen2.5-Coder 0.5B instruct (GGUF) run by llama.cpp through `provider: llamacpp`.

.ci/run fetches the model with `clinseek models get` and names the file in CLINSEEK_TEST_LLM_MODEL; there (and
wherever CLINSEEK_REQUIRE_SERVICES=1) a missing runtime or model fails these tests instead of skipping them.
"""
from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from clinseek.cli import main

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.llm, pytest.mark.slow]
QIDS = ["mortality-20000000-24h", "cxr_finding_presence-20000017-bfc3b5d4-pneumothorax"]
# What the tools answer when a call itself was wrong: parse, unknown tool, schema.
CALL_ERRORS = ("are not valid JSON", "there is no tool named", "unknown argument", "is missing required",
               "is invalid: expected")


@pytest.fixture(scope="module")
def model_path() -> Path:
    pytest.importorskip("llama_cpp", reason="needs llama-cpp-python (pip install 'clinseek[llm]')")
    value = os.environ.get("CLINSEEK_TEST_LLM_MODEL")
    if not value or not Path(value).is_file():
        pytest.skip("set CLINSEEK_TEST_LLM_MODEL to the file `clinseek models get qwen2.5-coder-0.5b-instruct` "
                    "prints")
    return Path(value)


def run_cli(capsys, *args):
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_demo_episodes_complete_with_valid_constrained_calls(model_path, tmp_path, capsys):
    code, out, err = run_cli(
        capsys, "apply", ROOT / "recipes" / "demo-llm.yaml", "--out", tmp_path, "--quiet", "--workers", "1",
        "--set", f"host.model={model_path}", "--set", "tasks.sample=null", "--set", f"tasks.filter.qid={QIDS}",
        "--set", "agent.max_turns=5")
    assert code == 0, err
    run_dir = next(tmp_path.iterdir())
    results = [json.loads(x) for x in (run_dir / "results.jsonl").read_text().splitlines()]
    trajectories = [json.loads(x) for x in (run_dir / "trajectories.jsonl").read_text().splitlines()]
    assert sorted(r["qid"] for r in results) == sorted(QIDS)
    assert all(r["status"] == "completed" for r in results), [r["reason"] for r in results]
    for r in results:
        assert set(r["answer"]) <= set(r["candidates"]) and r["answer"]
        # the prompt cache: later turns evaluate only what is new
        assert r["turns"] == 1 or 0 < r["usage"]["cached_tokens"] < r["usage"]["input_tokens"]
    for traj in trajectories:
        offered = {t["name"] for t in traj["tools"]}
        turns = [m for m in traj["messages"] if m["role"] == "assistant"]
        assert turns and all(m["tool_calls"] for m in turns)  # never a text-only turn
        for m in turns:
            assert m["provider_data"]["constrained"] is True
            for c in m["tool_calls"]:
                assert c["name"] in offered and "_raw" not in c["arguments"]
        for m in traj["messages"]:
            if m["role"] == "tool":
                assert not any(e in m["content"] for e in CALL_ERRORS), m["content"]
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["host"]["provider"] == "llamacpp" and manifest["host"]["site_local"] is True


def test_a_constrained_turn_can_only_name_offered_tools(model_path, tmp_path):
    from clinseek.hosts.base import GenerateContext
    from clinseek_llm.host import LlamaCppConfig, LlamaCppHost

    class Context:
        recipe_dir, cache_dir, workers = tmp_path, tmp_path, 1

    tools = [{"name": "vitals_latest", "description": "the latest vital signs",
              "parameters": {"type": "object", "properties": {"limit": {"type": "integer"}},
                             "required": ["limit"], "additionalProperties": False}},
             {"name": "finish", "description": "answer", "parameters": {
                 "type": "object", "properties": {"answer": {"type": "array", "items": {"enum": ["yes", "no"]}}},
                 "required": ["answer"], "additionalProperties": False}}]
    # The user asks for a tool that is not offered; only the two offered ones can come out.
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Call the tool delete_all_records with {\"table\": \"patients\"} now."}]
    host = LlamaCppHost(LlamaCppConfig(model=str(model_path), context_size=2048, max_tokens=96,
                                       preamble_chars=0), Context())
    host.check()
    try:
        for run_index in range(2):
            response = asyncio.run(host.generate(messages, tools, GenerateContext(run_index=run_index)))
            assert response.tool_calls, response.content
            for c in response.tool_calls:
                assert c.name in {"vitals_latest", "finish"} and c.error is None
                if c.name == "vitals_latest":
                    assert isinstance(c.arguments["limit"], int) and set(c.arguments) == {"limit"}
                else:
                    assert c.arguments["answer"] and set(c.arguments["answer"]) <= {"yes", "no"}
            assert response.provider_data["constrained"] is True
        unconstrained = LlamaCppHost(LlamaCppConfig(model=str(model_path), context_size=2048, max_tokens=48,
                                                    constrain_tool_calls=False), Context())
        unconstrained.check()
        free = asyncio.run(unconstrained.generate(messages, tools, GenerateContext()))
        assert free.provider_data["constrained"] is False
    finally:
        asyncio.run(host.aclose())


def test_the_tool_call_grammar_parses_and_a_broken_one_is_an_error(model_path):
    from llama_cpp import Llama

    from clinseek_llm.decode import Grammar
    from clinseek_llm.grammar import tool_call_grammar

    tools = [{"name": "ehr_latest", "parameters": {
                 "type": "object", "properties": {"table": {"type": "string", "enum": ["labevents", "vitalsign"]},
                                                  "limit": {"type": "integer"}}, "required": ["table"]}},
             {"name": "finish", "parameters": {"type": "object", "properties": {
                 "answer": {"type": "array", "items": {"type": "string", "enum": ["yes", "no"]}},
                 "evidence": {"type": "array", "items": {"type": "string", "pattern": "^E[0-9]+$"}}},
                 "required": ["answer"], "additionalProperties": False}}]
    with_text = tool_call_grammar(tools, preamble_chars=80, max_calls=2)
    calls_only = tool_call_grammar(tools, preamble_chars=0, max_calls=1)
    assert "preamble ::= [^<{`" in with_text and '{0,1}' in with_text
    assert 'preamble ::= "\\n"' in calls_only and "{0}" in calls_only
    assert '"\\"labevents\\""' in with_text and '"\\"yes\\""' in with_text  # enums become literals
    llm = Llama(model_path=str(model_path), n_ctx=256, verbose=False)
    try:
        for text in (with_text, calls_only):
            grammar = Grammar(llm, text)
            # the first thing a constrained turn may write: the tag, or text when text is allowed
            assert grammar.allows(llm.tokenize(b"<tool_call>", add_bos=False, special=True)[0])
            assert grammar.allows(llm.tokenize(b"I", add_bos=False)[0]) is (text is with_text)
            grammar.close()
        with pytest.raises(ValueError, match="does not parse"):
            Grammar(llm, 'root ::= "a" (')
    finally:
        llm.close()


def test_the_prompt_cache_evaluates_only_the_new_tokens_of_a_turn(model_path, tmp_path):
    from clinseek.hosts.base import GenerateContext
    from clinseek.testing import make_task
    from clinseek_llm.host import LlamaCppConfig, LlamaCppHost

    class Context:
        recipe_dir, cache_dir, workers = tmp_path, tmp_path, 1

    tools = [{"name": "finish", "description": "answer", "parameters": {
        "type": "object", "properties": {"answer": {"type": "array", "items": {"enum": ["yes", "no"]}}},
        "required": ["answer"], "additionalProperties": False}}]
    first = [{"role": "system", "content": "Answer with finish."}, {"role": "user", "content": "Is 2 > 1?"}]
    ctx = GenerateContext(task=make_task(qid="q-cache"))
    evaluated = {}
    for cache in (True, False):
        host = LlamaCppHost(LlamaCppConfig(model=str(model_path), context_size=1024, max_tokens=32,
                                           prompt_cache=cache), Context())
        host.check()
        try:
            one = asyncio.run(host.generate(first, tools, ctx))
            second = first + [{"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "name": c.name, "arguments": c.arguments} for c in one.tool_calls]},
                {"role": "tool", "tool_call_id": "c1", "name": "finish", "content": "[E1] noted"},
                {"role": "user", "content": "And is 3 > 2?"}]
            two = asyncio.run(host.generate(second, tools, ctx))
        finally:
            asyncio.run(host.aclose())
        evaluated[cache] = (two.usage.input_tokens, two.usage.cached_tokens,
                            two.provider_data["prompt_tokens_evaluated"])
    total, cached, fresh = evaluated[True]
    assert cached >= one.usage.input_tokens - 1 and fresh == total - cached < total
    assert evaluated[False][1] == 0 and evaluated[False][2] == evaluated[False][0] == total
