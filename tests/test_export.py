import json
from collections import Counter

import pytest
from pydantic import ValidationError

from clinseek.errors import UserError
from clinseek.exporters import BUILTIN_EXPORTERS, ExportOptions, export_run
from clinseek.exporters.filters import filter_records, provenance, trajectory_key
from clinseek.exporters.sharegpt import ShareGPTExporter, _turns, validate_sharegpt
from clinseek.report.sample import sample_records, write_sample_run


def _lines(path):
    return [json.loads(x) for x in open(path, encoding="utf-8") if x.strip()]


@pytest.fixture
def run(tmp_path):
    return write_sample_run(tmp_path / "run")


def test_builtin_exporters_registered_by_name():
    assert sorted(c.name for c in BUILTIN_EXPORTERS) == ["hf", "openai", "sharegpt", "trl"]


def test_options_refuse_unknown_keys_and_bad_ranges():
    with pytest.raises(ValidationError):
        ExportOptions(formats=["openai"], min_scor=1)
    with pytest.raises(ValidationError):
        ExportOptions(min_score=1.5)
    assert ExportOptions(formats=["trl", "trl"]).formats == ["trl"]


def test_openai_rows_arguments_are_json_strings_linked_by_tool_call_id(run, tmp_path):
    summary = export_run(run, "openai", tmp_path / "out")
    rows = _lines(tmp_path / "out" / "openai.jsonl")
    assert summary["stats"]["dropped_not_completed"] == 1 and len(rows) == 7
    row = rows[0]
    assert {t["type"] for t in row["tools"]} == {"function"}
    assert "finish" in [t["function"]["name"] for t in row["tools"]]
    call_ids = set()
    for m in row["messages"]:
        for c in m.get("tool_calls", []):
            assert isinstance(c["function"]["arguments"], str)
            json.loads(c["function"]["arguments"])
            call_ids.add(c["id"])
        if m["role"] == "tool":
            assert m["tool_call_id"] in call_ids and set(m) == {"role", "tool_call_id", "content"}
    # the trajectory ends on the model's finish call, not on the engine's "Answer recorded."
    last = row["messages"][-1]
    assert last["role"] == "assistant" and last["tool_calls"][0]["function"]["name"] == "finish"
    assert row["provenance"]["recipe_sha256"] == "ab" * 32 and row["provenance"]["host_model"] == "gpt-test"
    assert row["provenance"]["qid"] and "score" in row["provenance"]
    assert row["parallel_tool_calls"] is False  # one call per turn in the sample


def test_openai_flags_parallel_calls():
    from clinseek.exporters.openai import OpenAIExporter

    _, records = sample_records()
    rec = json.loads(json.dumps(records[0]))
    rec["messages"][2]["tool_calls"].append({"id": "extra", "name": "kb_search", "arguments": {"query": "x"}})
    rec["messages"].insert(4, {"role": "tool", "tool_call_id": "extra", "name": "kb_search", "content": "[E9] y"})
    row = OpenAIExporter({}).convert(rec)
    assert row["parallel_tool_calls"] is True
    assert json.loads(row["messages"][2]["tool_calls"][1]["function"]["arguments"]) == {"query": "x"}


def test_min_score_keeps_only_correct_answers(run, tmp_path):
    export_run(run, "trl", tmp_path / "out", min_score=1.0)
    rows = _lines(tmp_path / "out" / "trl.jsonl")
    # correct runs: mortality_1_10#0, mortality_2_20#0, mortality_2_20#1 ("Yes." normalises), los_gt_3#1
    assert sorted((r["provenance"]["qid"], r["provenance"]["run_index"]) for r in rows) == [
        ("los_gt_3_3_30", 1), ("mortality_1_10", 0), ("mortality_2_20", 0), ("mortality_2_20", 1)]
    assert all(r["provenance"]["score"] == 1.0 for r in rows)
    for m in rows[0]["messages"]:
        for c in m.get("tool_calls", []):
            assert isinstance(c["function"]["arguments"], dict)


def test_turn_limits_and_dedupe_and_sidecar(tmp_path):
    _, records = sample_records()
    twin = json.loads(json.dumps(records[0]))
    twin["run_index"] = 7
    for m in twin["messages"]:  # other call ids, same behaviour: a duplicate
        for c in m.get("tool_calls") or []:
            c["id"] += "_x"
    assert trajectory_key(twin) == trajectory_key(records[0])
    stats = Counter()
    kept = list(filter_records(records + [twin], ExportOptions(), stats))
    assert stats["dropped_duplicate"] == 1 and len(kept) == 7
    stats = Counter()
    assert list(filter_records(records, ExportOptions(max_turns=2, completed_only=False), stats)) == [
        records[4]]  # only the budget-exhausted episode has 2 model turns
    assert list(filter_records(records, ExportOptions(min_turns=4), Counter())) == []

    run = tmp_path / "run"
    write_sample_run(run)
    export_run(run, "openai", tmp_path / "out", provenance="sidecar")
    rows, prov = _lines(tmp_path / "out" / "openai.jsonl"), _lines(tmp_path / "out" / "provenance.jsonl")
    assert len(rows) == len(prov) == 7 and "provenance" not in rows[0]
    assert prov[0]["qid"] == "mortality_1_10"


def test_export_errors_are_user_errors(tmp_path, run):
    with pytest.raises(UserError, match="no trajectories.jsonl"):
        export_run(tmp_path, "openai")
    with pytest.raises(UserError, match="unknown exporter"):
        export_run(run, "alpaca")


def test_sharegpt_rows_pass_llamafactory_alternation_and_dataset_info(run, tmp_path):
    export_run(run, "sharegpt", tmp_path / "out")
    rows = _lines(tmp_path / "out" / "sharegpt.jsonl")
    assert rows and all(validate_sharegpt(r) == [] for r in rows)
    r = rows[0]
    assert [t["from"] for t in r["conversations"]] == ["human", "function_call", "observation", "function_call",
                                                       "observation", "function_call"]
    assert json.loads(r["conversations"][-1]["value"])["name"] == "finish"
    assert r["system"].startswith("You are") and isinstance(json.loads(r["tools"]), list)
    info = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
    entry = info["clinseek_sft"]
    assert entry["formatting"] == "sharegpt" and entry["file_name"] == "sharegpt.jsonl"
    assert entry["columns"] == {"messages": "conversations", "system": "system", "tools": "tools"}


def test_sharegpt_validator_catches_what_llamafactory_rejects():
    ok = {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "tools": "[]"}
    assert validate_sharegpt(ok) == []
    assert any("odd number" in p for p in validate_sharegpt({"conversations": ok["conversations"][:1]}))
    swapped = {"conversations": [{"from": "gpt", "value": "a"}, {"from": "human", "value": "q"}]}
    assert len(validate_sharegpt(swapped)) == 2
    bad_call = {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "x("}]}
    assert any("not JSON" in p for p in validate_sharegpt(bad_call))
    assert any("JSON string" in p for p in validate_sharegpt({**ok, "tools": [{"name": "x"}]}))


def test_sharegpt_merges_parallel_calls_and_a_user_nudge_after_a_tool():
    msgs = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "thinking", "tool_calls": [
            {"id": "a", "name": "ehr_sql", "arguments": {"query": "SELECT 1"}},
            {"id": "b", "name": "kb_search", "arguments": {"query": "x"}}]},
        {"role": "tool", "tool_call_id": "a", "name": "ehr_sql", "content": "1"},
        {"role": "tool", "tool_call_id": "b", "name": "kb_search", "content": "doc"},
        {"role": "user", "content": "Please call finish."},
        {"role": "assistant", "content": "done", "tool_calls": [
            {"id": "c", "name": "finish", "arguments": {"answer": ["no"]}}]},
    ]
    turns = _turns(msgs, keep_thoughts=True)
    assert [t["from"] for t in turns] == ["human", "function_call", "observation", "function_call"]
    assert turns[1]["value"].startswith("<think>thinking</think>")
    assert len(json.loads(turns[1]["value"].split("</think>")[1])) == 2
    assert json.loads(turns[2]["value"].split("\n\n")[0]) == ["1", "doc"]
    assert turns[2]["value"].endswith("Please call finish.")
    assert validate_sharegpt({"conversations": turns}) == []


def test_sharegpt_drops_rows_that_cannot_be_valid():
    _, records = sample_records()
    rec = dict(records[0], messages=[{"role": "system", "content": "s"}, {"role": "user", "content": "q"}])
    assert ShareGPTExporter({}).convert(rec) is None


def test_provenance_fields():
    _, records = sample_records()
    p = provenance(records[6])
    assert p["task"] == "diagnosis_ccsr" and p["score"] == pytest.approx(2 / 3) and p["turns"] == 3


def test_hf_dataset_round_trips_without_null_padding(run, tmp_path, monkeypatch):
    from clinseek.exporters.hf import load_hf_export

    export_run(run, ["trl", "hf"], tmp_path / "out")
    trl_rows = _lines(tmp_path / "out" / "trl" / "trl.jsonl")
    ds = load_hf_export(tmp_path / "out" / "hf" / "hf_dataset")
    assert len(ds) == len(trl_rows)
    assert ds[0]["messages"] == trl_rows[0]["messages"]  # no `"query": null` added to ehr_latest's arguments
    assert ds[0]["tools"] == trl_rows[0]["tools"]
    assert ds[0]["provenance"]["qid"] == trl_rows[0]["provenance"]["qid"]


def test_hf_push_needs_a_token_and_pushes_private_when_given(run, tmp_path, monkeypatch):
    import datasets

    monkeypatch.delenv("CLINSEEK_TEST_HF", raising=False)
    with pytest.raises(UserError, match="holds no token"):
        export_run(run, "hf", tmp_path / "a", hf_repo="site/dx", hf_token_env="CLINSEEK_TEST_HF")
    pushed = {}
    monkeypatch.setattr(datasets.Dataset, "push_to_hub",
                        lambda self, repo, token=None, private=None: pushed.update(repo=repo, token=token,
                                                                                  private=private, n=len(self)))
    monkeypatch.setenv("CLINSEEK_TEST_HF", "hf_secret")
    export_run(run, "hf", tmp_path / "b", hf_repo="site/dx", hf_token_env="CLINSEEK_TEST_HF")
    assert pushed == {"repo": "site/dx", "token": "hf_secret", "private": True, "n": 7}
    summary = json.loads((tmp_path / "b" / "export_summary.json").read_text())
    assert "hf_secret" not in json.dumps(summary)
