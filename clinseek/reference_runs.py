"""`clinseek import reference`: the reference system's results.jsonl as a clinseek run directory.

The reference writes one row per run: `qid`, the OpenAI-shape conversation in `messages`, and sometimes `label`,
`task` and token counts. Imported, each row becomes a results.jsonl line and a trajectory (tool results numbered
E1, E2, ... like an engine run's, so evidence can be traced), and the manifest says where it came from, so
`score`, `report`, `compare` and `export` work on the paper system's own runs. The conversation is kept as the
reference wrote it (tool names, the finish call's `response`): training data made from it carries the names the
released model was trained on.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from clinseek.errors import UserError
from clinseek.runs import MANIFEST, RESULTS, TRAJECTORIES, iter_lines
from clinseek.scoring import _count_tool_calls, _label_list, _parse_args, _task_from_qid, read_benchmark, \
    reference_answer


def import_reference(results: Path, out: Path, benchmark: Path | None = None,
                     warn: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write OUT (a new or empty folder) from a reference results file; returns the manifest written."""
    results = Path(results)
    if results.is_dir():
        results = results / RESULTS
    if not results.is_file():
        raise UserError(f"reference results file not found: {results}",
                        hint="give the reference system's results.jsonl (or the folder holding it)")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} exists and is not empty: an import never writes over a run",
                        hint="choose a new --out folder")
    bench = read_benchmark(benchmark) if benchmark is not None else {}
    say = warn or (lambda m: None)
    results_lines, trajectory_lines = [], []
    skipped: list[str] = []
    index: dict[str, int] = defaultdict(int)
    models: Counter = Counter()
    for lineno, raw in iter_lines(results, say):
        if not isinstance(raw.get("messages"), list) or raw.get("qid") is None:
            skipped.append(f"{results}:{lineno}: not a reference results row (needs `qid` and a `messages` list)")
            continue
        qid = str(raw["qid"])
        item = bench.get(qid, {})
        label = raw.get("label", item.get("label", item.get("ground_truth")))
        if label is None:
            skipped.append(f"{results}:{lineno}: no label for qid {qid} (give --benchmark with the file the run "
                           "was made on)")
            continue
        run_index = index[qid]
        index[qid] += 1
        if raw.get("model"):
            models[str(raw["model"])] += 1
        result, trajectory = _episode(raw, item, qid, run_index, _label_list(label))
        results_lines.append(result)
        trajectory_lines.append(trajectory)
    for line in skipped[:3]:
        say(line)
    if len(skipped) > 3:
        say(f"{len(skipped) - 3} more row(s) skipped ({len(skipped)} in all)")
    if not results_lines:
        raise UserError(f"{results} holds no reference run that can be imported"
                        + (f" ({len(skipped)} row(s) skipped; the first: {skipped[0]})" if skipped else ""),
                        hint="check that it is the reference system's results.jsonl")
    counts = Counter(r["status"] for r in results_lines)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    from clinseek import __version__

    model = models.most_common(1)[0][0] if models else None
    manifest = {
        "recipe": {"name": f"reference-{results.parent.name or 'run'}", "agent": {"evidence": "seek"},
                   "host": {"provider": "reference", "model": model}},
        "imported_from": "reference",
        "source": {"results": str(results.resolve()), "results_sha256": _sha256(results),
                   "benchmark": str(Path(benchmark).resolve()) if benchmark else None,
                   "benchmark_sha256": _sha256(Path(benchmark)) if benchmark else None},
        "host": {"provider": "reference", "model": model},
        "clinseek_version": __version__, "started": now, "ended": now, "counts": dict(counts),
        "task_count": len(index), "rows_skipped": len(skipped), "first_skipped": skipped[:5],
    }
    tmp = out.parent / f".{out.name}.importing"
    tmp.mkdir(parents=True, exist_ok=False)
    _write_jsonl(tmp / RESULTS, results_lines)
    _write_jsonl(tmp / TRAJECTORIES, trajectory_lines)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False), encoding="utf-8")
    (tmp / "events.log").write_text(f"{now} imported {len(results_lines)} episodes from {results}\n",
                                    encoding="utf-8")
    if out.exists():
        out.rmdir()   # empty, checked above
    tmp.replace(out)  # the run directory appears whole or not at all
    return manifest


def _episode(raw: dict[str, Any], item: dict[str, Any], qid: str, run_index: int, label: list[str]
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    messages, evidence = _canonical(raw["messages"])
    answer, source = reference_answer(raw["messages"])
    counts = _count_tool_calls(raw["messages"])
    usage = raw.get("usage") or {}
    task = raw.get("task") or item.get("task") or _task_from_qid(qid)
    task_row = {**item, "qid": qid, "task": task, "label": label}
    result = {
        "qid": qid, "run_index": run_index, "task": task,
        "task_type": raw.get("task_type") or item.get("task_type") or "unknown",
        "answer": answer, "label": label,
        "candidates": list(raw.get("candidates") or item.get("candidates") or []),
        "status": "completed" if source == "finish_tool_call" else "error",
        "reason": None if source == "finish_tool_call" else source,
        "usage": {"input_tokens": int(usage.get("prompt_tokens") or usage.get("input_tokens") or 0),
                  "output_tokens": int(usage.get("completion_tokens") or usage.get("output_tokens") or 0),
                  "cached_tokens": 0},
        "cost_usd": None, "timings": {}, "turns": sum(1 for m in raw["messages"] if m.get("role") == "assistant"),
        "tool_calls": sum(counts.values()), "tool_counts": counts, "cited_evidence": [], "attempt": 0,
    }
    trajectory = {
        "qid": qid, "run_index": run_index, "task": task_row, "messages": messages,
        "tools": [{"name": n, "description": "", "parameters": {"type": "object"}} for n in sorted(counts)],
        "evidence": evidence, "answer": answer, "cited_evidence": [], "status": result["status"],
        "reason": result["reason"], "host": {"provider": "reference", "model": raw.get("model")},
        "usage": result["usage"], "cost_usd": None, "attempt": 0, "result": result,
    }
    return result, trajectory


def _canonical(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """OpenAI-shape messages -> the canonical trajectory shape (docs/runs.md): tool calls as {id, name, arguments}
    with parsed arguments, and each tool result numbered as evidence."""
    out: list[dict[str, Any]] = []
    evidence: dict[str, Any] = {}
    calls: dict[str, tuple[str, Any]] = {}
    pending: list[str] = []
    turn = 0
    for m in messages:
        role = m.get("role")
        if role == "assistant":
            turn += 1
            tcs = []
            for i, tc in enumerate(m.get("tool_calls") or []):
                fn = tc.get("function") or tc
                cid = str(tc.get("id") or f"call_{turn}_{i}")
                args = _parse_args(fn.get("arguments", {}))
                name = str(fn.get("name", "unknown"))
                calls[cid] = (name, args)
                pending.append(cid)
                tcs.append({"id": cid, "name": name, "arguments": args if args is not None else {}})
            msg: dict[str, Any] = {"role": "assistant", "content": m.get("content")}
            if tcs:
                msg["tool_calls"] = tcs
            if m.get("reasoning_content"):
                msg["provider_data"] = {"reasoning_content": m["reasoning_content"]}
            out.append(msg)
        elif role == "tool":
            cid = str(m.get("tool_call_id") or (pending[0] if pending else ""))
            if cid in pending:
                pending.remove(cid)
            name, args = calls.get(cid, (str(m.get("name", "unknown")), {}))
            content = m.get("content")
            text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
            eid = f"E{len(evidence) + 1}"
            is_error = text.lstrip().lower().startswith("error")
            evidence[eid] = {"tool": name, "arguments": args, "turn": turn, "tool_call_id": cid,
                             "chars": len(text), "truncated": False, "is_error": is_error}
            out.append({"role": "tool", "tool_call_id": cid, "name": name, "content": text, "evidence_id": eid,
                        "truncated": False, "is_error": is_error})
        else:
            out.append({"role": role, "content": m.get("content")})
    return out, evidence


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
