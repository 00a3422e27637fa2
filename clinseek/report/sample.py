"""A small, realistic run directory built from canonical records (docs/runs.md).

Used by the tests of scoring, export and the report, and to make the report screenshot in the docs without a
model. The records are what the engine writes: system/user prompts, assistant tool calls, tool observations with
evidence ids, a finish call citing evidence, the ledger, usage and timings.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from clinseek.runs import MANIFEST, RESULTS, TRAJECTORIES

TOOLS = [
    {"name": "ehr_latest", "description": "Latest values of vitals and labs by the prediction time.",
     "parameters": {"type": "object", "properties": {"names": {"type": "array", "items": {"type": "string"},
                                                               "description": "measurement names"}},
                    "required": ["names"], "additionalProperties": False}},
    {"name": "ehr_sql", "description": "Run one read-only SELECT over this patient's tables.",
     "parameters": {"type": "object", "properties": {"query": {"type": "string", "description": "a SELECT"}},
                    "required": ["query"], "additionalProperties": False}},
    {"name": "kb_search", "description": "Search the clinical knowledge base.",
     "parameters": {"type": "object", "properties": {"query": {"type": "string"},
                                                     "limit": {"type": "integer", "default": 5}},
                    "required": ["query"], "additionalProperties": False}},
    {"name": "finish", "description": "Give the final answer and the evidence ids it rests on.",
     "parameters": {"type": "object", "properties": {
         "answer": {"type": "array", "items": {"type": "string"}},
         "evidence": {"type": "array", "items": {"type": "string"}}},
         "required": ["answer"], "additionalProperties": False}},
]

# (qid, task, task_type, candidates, label, answer, status, run_index)
EPISODES: list[tuple] = [
    ("mortality_1_10", "mortality", "risk_prediction", ["yes", "no"], ["no"], ["no"], "completed", 0),
    ("mortality_1_10", "mortality", "risk_prediction", ["yes", "no"], ["no"], ["yes"], "completed", 1),
    ("mortality_2_20", "mortality", "risk_prediction", ["yes", "no"], ["yes"], ["yes"], "completed", 0),
    ("mortality_2_20", "mortality", "risk_prediction", ["yes", "no"], ["yes"], ["Yes."], "completed", 1),
    ("los_gt_3_3_30", "los_gt_3", "risk_prediction", ["yes", "no"], ["yes"], [], "budget_exhausted", 0),
    ("los_gt_3_3_30", "los_gt_3", "risk_prediction", ["yes", "no"], ["yes"], ["yes"], "completed", 1),
    ("diagnosis_ccsr_4_40", "diagnosis_ccsr", "decision_making", [],
     ["Septicemia", "Acute kidney failure", "Heart failure"], ["septicemia", "heart failure", "pneumonia"],
     "completed", 0),
    ("diagnosis_ccsr_4_40", "diagnosis_ccsr", "decision_making", [],
     ["Septicemia", "Acute kidney failure", "Heart failure"], ["Septicemia"], "completed", 1),
]


def _messages(qid: str, question: str, answer: list[str], status: str, idx: int) -> tuple[list, dict, list]:
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": "You are a clinical evidence-seeking agent. Use the tools, then finish."},
        {"role": "user", "content": question},
        {"role": "assistant", "content": "I will look at the latest vitals and labs first.",
         "tool_calls": [{"id": f"call_{qid}_{idx}_1", "name": "ehr_latest",
                         "arguments": {"names": ["heart_rate", "lactate", "creatinine"]}}]},
        {"role": "tool", "tool_call_id": f"call_{qid}_{idx}_1", "name": "ehr_latest",
         "content": "name | value | unit | charttime\nheart_rate | 112 | bpm | 2150-01-02 08:00\n"
                    "lactate | 3.1 | mmol/L | 2150-01-02 07:40\ncreatinine | 2.4 | mg/dL | 2150-01-02 06:00",
         "evidence_id": "E1", "truncated": False, "is_error": False},
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": f"call_{qid}_{idx}_2", "name": "kb_search",
                         "arguments": {"query": "lactate above 2 sepsis mortality", "limit": 3}}]},
        {"role": "tool", "tool_call_id": f"call_{qid}_{idx}_2", "name": "kb_search",
         "content": "[1] Surviving Sepsis Campaign: lactate > 2 mmol/L indicates tissue hypoperfusion ...",
         "evidence_id": "E2", "truncated": True, "is_error": False},
    ]
    evidence = {
        "E1": {"tool": "ehr_latest", "arguments": {"names": ["heart_rate", "lactate", "creatinine"]}, "turn": 1,
               "tool_call_id": f"call_{qid}_{idx}_1", "chars": 160, "truncated": False, "is_error": False},
        "E2": {"tool": "kb_search", "arguments": {"query": "lactate above 2 sepsis mortality", "limit": 3},
               "turn": 2, "tool_call_id": f"call_{qid}_{idx}_2", "chars": 90, "truncated": True,
               "is_error": False},
    }
    cited: list[str] = []
    if status == "completed":
        cited = ["E1"] if idx == 0 else ["E1", "E2"]
        msgs.append({"role": "assistant", "content": "The lactate and creatinine settle it.",
                     "tool_calls": [{"id": f"call_{qid}_{idx}_3", "name": "finish",
                                     "arguments": {"answer": answer, "evidence": cited}}]})
        msgs.append({"role": "tool", "tool_call_id": f"call_{qid}_{idx}_3", "name": "finish",
                     "content": "Answer recorded.", "evidence_id": None, "truncated": False, "is_error": False})
    return msgs, evidence, cited


def sample_records(episodes: list[tuple] | None = None) -> tuple[list[dict], list[dict]]:
    """(results rows, trajectory records) for the given episodes (default: EPISODES)."""
    results, trajectories = [], []
    for n, (qid, task, task_type, cands, label, answer, status, idx) in enumerate(episodes or EPISODES):
        question = f"Question {qid}: at the prediction time, answer for this patient ({task})."
        subject = int(qid.split("_")[-2])
        msgs, evidence, cited = _messages(qid, question, answer, status, idx)
        tool_counts: dict[str, int] = {}
        for m in msgs:
            for tc in m.get("tool_calls") or []:
                if tc["name"] != "finish":
                    tool_counts[tc["name"]] = tool_counts.get(tc["name"], 0) + 1
        usage = {"input_tokens": 1000 + 100 * n, "output_tokens": 60 + 5 * n, "cached_tokens": 0}
        ans = answer if status == "completed" else []
        reason = None if status == "completed" else "max_turns reached"
        task_rec = {"qid": qid, "subject_id": subject, "hadm_id": subject * 10,
                    "prediction_time": "2150-01-02T12:00:00", "task": task, "task_type": task_type,
                    "question": question, "candidates": cands, "label": label, "study_ids": [],
                    "image_paths": [], "input": None, "extra": {}}
        results.append({"qid": qid, "run_index": idx, "task": task, "task_type": task_type, "answer": ans,
                        "label": label, "candidates": cands, "status": status, "reason": reason, "usage": usage,
                        "cost_usd": round(usage["input_tokens"] * 1e-6 + usage["output_tokens"] * 4e-6, 6),
                        "timings": {"wall_s": 1.5 + 0.25 * n, "host_s": 1.2 + 0.2 * n, "tools_s": 0.1},
                        "turns": sum(1 for m in msgs if m["role"] == "assistant"),
                        "tool_calls": sum(tool_counts.values()) + (1 if status == "completed" else 0),
                        "tool_counts": tool_counts, "cited_evidence": cited,
                        "host_calls": sum(1 for m in msgs if m["role"] == "assistant")})
        trajectories.append({"qid": qid, "run_index": idx, "task": task_rec, "messages": msgs, "tools": TOOLS,
                             "evidence": evidence, "answer": ans, "cited_evidence": cited, "status": status,
                             "reason": reason, "host": {"provider": "openai", "model": "gpt-test",
                                                        "base_url": "http://127.0.0.1:8000/v1"},
                             "recipe_sha256": "ab" * 32, "usage": usage, "cost_usd": None})
    return results, trajectories


def write_sample_run(run_dir: Path | str, episodes: list[tuple] | None = None) -> Path:
    """Write manifest.json, results.jsonl and trajectories.jsonl for the sample episodes; return the folder."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    results, trajectories = sample_records(episodes)
    manifest = {"recipe": {"name": "sample", "host": {"provider": "openai", "model": "gpt-test"}},
                "recipe_sha256": "ab" * 32, "clinseek_version": "0.1.0",
                "host": {"provider": "openai", "model": "gpt-test"},
                "started": "2026-11-25T12:00:00+00:00", "ended": "2026-11-25T12:01:00+00:00"}
    (run_dir / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    for name, rows in ((RESULTS, results), (TRAJECTORIES, trajectories)):
        with (run_dir / name).open("w", encoding="utf-8") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    return run_dir
