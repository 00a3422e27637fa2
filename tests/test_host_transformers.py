"""The transformers host with a tiny random Qwen2 model built in the test (no download, CPU)."""
from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parent))

pytest.importorskip("torch")
pytest.importorskip("transformers")

from fake_servers.tiny_model import ForceTokens, build_tiny_model  # noqa: E402

from clinseek.hosts.base import GenerateContext  # noqa: E402
from clinseek.hosts.errors import HostRequestRejected  # noqa: E402
from clinseek.hosts.transformers_host import TransformersConfig, TransformersHost  # noqa: E402

pytestmark = pytest.mark.slow  # importing torch + transformers takes seconds on a shared CPU

TOOLS = [
    {"name": "probe_lookup", "description": "Look a key up.", "parameters": {
        "type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}},
    {"name": "finish", "description": "Give the answer.", "parameters": {
        "type": "object", "properties": {"answer": {"type": "array", "items": {"type": "string"}}}}},
]
MESSAGES = [{"role": "system", "content": "You are a careful clinical assistant."},
            {"role": "user", "content": "Is the patient at risk?"}]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny-qwen2"))


class ScriptedHost(TransformersHost):
    """Forces each turn's output to the next scripted text (the random model would write noise)."""

    script: list[str]

    def logits_processors(self, prompt_length, tools, ctx):
        if not self.script:
            return []
        text = self.script.pop(0)
        ids = self.tokenizer.encode(text, add_special_tokens=False) + [self.tokenizer.eos_token_id]
        return [ForceTokens(ids, prompt_length)]


def scripted(model_dir, texts, **options):
    config = TransformersConfig.model_validate({"provider": "transformers", "model": str(model_dir),
                                                "device": "cpu", "max_tokens": 64, **options})
    host = ScriptedHost(config)
    host.script = list(texts)
    return host


async def test_forced_tool_call_is_parsed_with_usage(model_dir):
    host = scripted(model_dir, ['<tool_call>\n{"name": "probe_lookup", "arguments": {"key": "a"}}\n</tool_call>'])
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert [(c.name, c.arguments, c.error) for c in r.tool_calls] == [("probe_lookup", {"key": "a"}, None)]
    assert r.finish_reason == "tool_calls" and r.content is None
    prompt = host.render(MESSAGES, TOOLS)
    assert '"name": "probe_lookup"' in prompt and prompt.endswith("<|im_start|>assistant\n")
    assert r.usage.input_tokens == len(host.tokenizer.encode(prompt, add_special_tokens=False))
    assert r.usage.output_tokens > 5 and r.response_id.startswith("local-")
    assert host.describe() == {"provider": "transformers", "model": str(model_dir), "site_local": True,
                               "device": "cpu"}


async def test_history_with_tool_results_renders_and_malformed_call_is_flagged(model_dir):
    host = scripted(model_dir, ['<tool_call>\n{"name": "finish", "arguments": {"answer": [yes]}}\n</tool_call>'])
    history = MESSAGES + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "name": "probe_lookup", "arguments": {"key": "a"}}]},
        {"role": "tool", "tool_call_id": "c1", "name": "probe_lookup", "content": "value: 42", "evidence_id": "E1"},
    ]
    r = await host.generate(history, TOOLS, GenerateContext())
    prompt = host.render(history, TOOLS)
    assert "<tool_response>\nvalue: 42\n</tool_response>" in prompt
    assert '{"name": "probe_lookup", "arguments": {"key": "a"}}' in prompt
    (call,) = r.tool_calls
    assert call.name == "finish" and call.error and "[yes]" in call.raw_arguments


async def test_unforced_random_model_runs_and_returns_text(model_dir):
    host = scripted(model_dir, [], max_tokens=8)
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert r.usage.output_tokens <= 8 and r.finish_reason in ("length", "stop", "tool_calls")


async def test_thinking_is_split_from_the_reply(model_dir):
    host = scripted(model_dir, ["<think>check labs</think>The answer is yes."])
    r = await host.generate(MESSAGES, [], GenerateContext())
    assert r.content == "The answer is yes." and r.provider_data["reasoning_content"] == "check labs"


async def test_relative_model_dir_resolves_against_the_recipe(model_dir):
    context = SimpleNamespace(recipe_dir=model_dir.parent, cache_dir=model_dir.parent, warn=print)
    config = TransformersConfig.model_validate({"provider": "transformers", "model": model_dir.name})
    assert TransformersHost(config, context).source() == str(model_dir)


async def test_uncached_hub_id_is_a_clear_error_without_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    host = TransformersHost(TransformersConfig.model_validate(
        {"provider": "transformers", "model": "someone/not-cached-model", "device": "cpu"}))
    with pytest.raises(HostRequestRejected, match="cannot load model") as info:
        await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert "local_files_only" in info.value.render()


async def test_a_real_episode_runs_on_the_local_model(model_dir):
    from datetime import datetime

    from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
    from clinseek.tasks import Task
    from clinseek.toolsets import Toolset, ToolsetConfig, tool

    class ProbeToolset(Toolset):
        name = "probe"
        Config = ToolsetConfig
        patient_data = False

        @tool
        def probe_lookup(self, episode, key: str) -> str:
            """Look a key up for this patient.

            Args:
                key: the key to look up.
            """
            return f"value of {key} for subject {episode.binding.subject_id}"

    class RecordingHost(ScriptedHost):
        prompts: list[str] = []

        def render(self, messages, tools):
            text = super().render(messages, tools)
            self.prompts.append(text)
            return text

    host = RecordingHost(TransformersConfig.model_validate(
        {"provider": "transformers", "model": str(model_dir), "device": "cpu", "max_tokens": 64}))
    host.script = ['<tool_call>\n{"name": "probe_lookup", "arguments": {"key": "a"}}\n</tool_call>',
                   '<tool_call>\n{"name": "finish", "arguments": {"answer": ["yes"], "evidence": ["E1"]}}\n'
                   '</tool_call>']
    host.prompts = []
    task = Task(qid="q1", subject_id=42, hadm_id=7, prediction_time=datetime(2150, 1, 2, 8, 0), task="risk",
                task_type="risk_prediction", question="At risk?", candidates=["yes", "no"], label=["yes"])
    runner = EpisodeRunner(task=task, run_index=0, host=host, toolbox=ToolBox.build([ProbeToolset(ToolsetConfig())]),
                           limits=AgentLimits(max_turns=4), system="You are a careful clinical assistant.",
                           user="Is the patient at risk?")
    result, trajectory = await runner.run()
    assert result["status"] == "completed", result["reason"]
    assert result["answer"] == ["yes"] and result["cited_evidence"] == ["E1"]
    assert result["host_calls"] == 2 and result["usage"]["input_tokens"] > 0
    tool_message = next(m for m in trajectory["messages"] if m["role"] == "tool")
    assert tool_message["content"] == "[E1] value of a for subject 42"
    # the second turn's prompt carried the first call and its result through the chat template
    assert '"name": "probe_lookup"' in host.prompts[1] and "[E1] value of a for subject 42" in host.prompts[1]
    assert '"name": "finish"' in host.prompts[0]  # the engine's finish tool was offered


async def test_hub_id_loads_offline_from_a_cache_folder(model_dir, tmp_path):
    import shutil

    repo = tmp_path / "hub" / "models--test-org--tiny-qwen2"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123456789abcdef")
    host = scripted(tmp_path, ['<tool_call>{"name": "finish", "arguments": {"answer": ["no"]}}</tool_call>'],
                    model="test-org/tiny-qwen2", hub_cache_dir=str(tmp_path / "hub"))
    r = await host.generate(MESSAGES, TOOLS, GenerateContext())
    assert r.tool_calls[0].arguments == {"answer": ["no"]}
