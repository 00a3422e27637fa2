"""ClinSeek-Bench scoring: set precision / recall / F1 between an answer list and a label list.

Aggregation follows ClinSeek-Bench: each run of a question is scored, runs are averaged per question, questions
are averaged per task, and the overall number is the macro mean over tasks (each task weighs the same however
many questions it has). The micro mean over questions is reported too, because the reference scripts print it.
Everything here is deterministic; an LLM judge would be a plugin scorer (clinseek.scorers).
"""
from __future__ import annotations

import ast
import json
import re
import unicodedata
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from clinseek.errors import UserError
from clinseek.runs import MANIFEST, RESULTS, SCORES, iter_lines

YES_NO = {"yes", "no"}
_PUNCT_RE = re.compile(r"[^\w\s]", re.UNICODE)
_SPACE_RE = re.compile(r"\s+")


def normalise(text: Any) -> str:
    """Lower case, punctuation dropped (so "Sepsis." == "sepsis"), whitespace collapsed, unicode NFKC."""
    text = unicodedata.normalize("NFKC", str(text if text is not None else ""))
    text = _PUNCT_RE.sub(" ", text.lower()).replace("_", " ")
    return _SPACE_RE.sub(" ", text).strip()


def _norm_set(items: Iterable[Any]) -> set[str]:
    return {n for n in (normalise(x) for x in items or []) if n}


def set_prf(answer: Iterable[Any], label: Iterable[Any]) -> tuple[float, float, float]:
    """Set precision, recall and F1 after normalising both sides. An empty answer scores 0 (as the reference)."""
    a, g = _norm_set(answer), _norm_set(label)
    if not a:
        return 0.0, 0.0, 0.0
    hit = len(a & g)
    p = hit / len(a)
    r = hit / len(g) if g else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1


def exact_match(answer: Iterable[Any], label: Iterable[Any]) -> float:
    a, g = _norm_set(answer), _norm_set(label)
    return 1.0 if a and a == g else 0.0


def is_yes_no(row: dict[str, Any]) -> bool:
    """A yes/no task: its candidates (or, without candidates, its label) are within {yes, no}."""
    cands = _norm_set(row.get("candidates") or [])
    if cands:
        return cands <= YES_NO
    lab = _norm_set(row.get("label") or [])
    return bool(lab) and lab <= YES_NO


def score_one(row: dict[str, Any]) -> dict[str, float]:
    """Metrics for one run: precision, recall, f1, exact_match, and yes_no_correct for yes/no tasks."""
    answer, label = row.get("answer") or [], row.get("label") or []
    p, r, f1 = set_prf(answer, label)
    out = {"precision": p, "recall": r, "f1": f1, "exact_match": exact_match(answer, label)}
    if is_yes_no(row):
        out["yes_no_correct"] = out["exact_match"]
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else 0.0


_METRICS = ("precision", "recall", "f1", "exact_match")
_EFFORT = ("tool_calls_avg", "turns_avg", "tokens_avg")


def _effort(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Tool calls, turns and tokens (input + output, from `usage`) per episode, averaged over a question's runs."""
    def tokens(r: dict[str, Any]) -> float:
        u = r.get("usage") or {}
        return float((u.get("input_tokens") or u.get("prompt_tokens") or 0)
                     + (u.get("output_tokens") or u.get("completion_tokens") or 0))
    return {"tool_calls_avg": _mean([float(r.get("tool_calls") or 0) for r in runs]),
            "turns_avg": _mean([float(r.get("turns") or 0) for r in runs]),
            "tokens_avg": _mean([tokens(r) for r in runs])}


def strict_reference_scores(rows: Iterable[dict[str, Any]], benchmark_qids: Iterable[str] | None = None
                            ) -> dict[str, Any]:
    """The reference script's numbers, reproduced exactly: answers and labels only lower-cased (no punctuation or
    space normalisation), runs averaged per question, and the headline the plain mean over the questions that
    have results (micro); benchmark questions without any result count as not done, not as 0. Per task the same
    mean over that task's questions."""
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_q[str(row.get("qid"))].append(row)
    per_q: dict[str, dict[str, float]] = {}
    tasks: dict[str, list[str]] = defaultdict(list)
    for qid, runs in by_q.items():
        scores = [_lower_only_prf(r.get("answer") or [], r.get("label") or []) for r in runs]
        per_q[qid] = {k: _mean([sc[k] for sc in scores]) for k in ("precision", "recall", "f1", "exact_match")}
        tasks[str(runs[0].get("task") or "unknown")].append(qid)
    total = len(set(benchmark_qids)) if benchmark_qids is not None else len(per_q)

    def mean_of(qids: list[str]) -> dict[str, Any]:
        return {k: _mean([per_q[q][k] for q in qids]) for k in ("precision", "recall", "f1", "exact_match")}
    return {**mean_of(list(per_q)), "questions_done": len(per_q), "questions_total": total,
            "runs": sum(len(v) for v in by_q.values()),
            "per_task": {t: {**mean_of(qs), "questions_done": len(qs)} for t, qs in sorted(tasks.items())}}


def _lower_only_prf(answer: Iterable[Any], label: Iterable[Any]) -> dict[str, float]:
    a = {str(x).lower() for x in answer if isinstance(x, str)}
    g = {str(x).lower() for x in label}
    if not a:
        return {"precision": 0.0, "recall": 0.0, "f1": 0.0, "exact_match": 0.0}
    hit = len(a & g)
    p, r = hit / len(a), (hit / len(g) if g else 0.0)
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0,
            "exact_match": 1.0 if a == g else 0.0}


def score_rows(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Aggregate result rows (docs/runs.md results.jsonl shape: qid, run_index, task, task_type, answer, label,
    candidates, status) into ClinSeek-Bench scores.

    Returns {"overall", "per_task", "per_task_type", "per_question", "counts"}. Each aggregate holds precision,
    recall, f1, exact_match (means of per-question means), yes_no_accuracy (None when no yes/no question),
    questions, runs, completed (runs whose status is completed).
    """
    by_q: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_q[str(row.get("qid"))].append(row)

    questions = []
    for qid in sorted(by_q):
        runs = sorted(by_q[qid], key=lambda r: r.get("run_index", 0))
        per_run = [score_one(r) for r in runs]
        first = runs[0]
        q = {"qid": qid, "task": first.get("task") or "unknown", "task_type": first.get("task_type") or "unknown",
             "runs": len(runs), "completed": sum(1 for r in runs if r.get("status", "completed") == "completed"),
             "label": first.get("label") or [], "answers": [r.get("answer") or [] for r in runs]}
        for m in _METRICS:
            q[m] = _mean([s[m] for s in per_run])
        for k, v in _effort(runs).items():
            q[k] = v
        if "yes_no_correct" in per_run[0]:
            q["yes_no_accuracy"] = _mean([s["yes_no_correct"] for s in per_run])
        questions.append(q)

    def aggregate(qs: list[dict[str, Any]]) -> dict[str, Any]:
        agg: dict[str, Any] = {m: _mean([q[m] for q in qs]) for m in _METRICS}
        yn = [q["yes_no_accuracy"] for q in qs if "yes_no_accuracy" in q]
        agg["yes_no_accuracy"] = _mean(yn) if yn else None
        agg["questions"] = len(qs)
        agg["runs"] = sum(q["runs"] for q in qs)
        agg["completed"] = sum(q["completed"] for q in qs)
        for k in _EFFORT:  # per episode, as the reference's table: every run counts once
            agg[k] = sum(q[k] * q["runs"] for q in qs) / agg["runs"] if agg["runs"] else 0.0
        return agg

    by_task: dict[str, list] = defaultdict(list)
    by_type: dict[str, list] = defaultdict(list)
    for q in questions:
        by_task[q["task"]].append(q)
        by_type[q["task_type"]].append(q)
    per_task = {t: aggregate(qs) for t, qs in sorted(by_task.items())}
    per_type = {t: aggregate(qs) for t, qs in sorted(by_type.items())}

    overall: dict[str, Any] = {m: _mean([v[m] for v in per_task.values()]) for m in _METRICS}
    yn_tasks = [v["yes_no_accuracy"] for v in per_task.values() if v["yes_no_accuracy"] is not None]
    overall["yes_no_accuracy"] = _mean(yn_tasks) if yn_tasks else None
    micro = aggregate(questions)
    overall["f1_micro"] = micro["f1"]
    overall["tasks"] = len(per_task)
    for k in ("questions", "runs", "completed", *_EFFORT):
        overall[k] = micro[k]
    return {"overall": overall, "per_task": per_task, "per_task_type": per_type, "per_question": questions,
            "counts": {"questions": micro["questions"], "runs": micro["runs"], "completed": micro["completed"],
                       "tasks": len(per_task), "task_types": len(per_type)}}


# Run directories -----------------------------------------------------------------------------------------

class NothingScorable(UserError):
    """A run with no episode to score (none at all, or all ended in `error`): not a score of 0."""


def load_run_rows(run_dir: Path, *, warn: Any = None) -> list[dict[str, Any]]:
    """The effective result of each (qid, run_index) of a run (docs/runs.md): a retried episode's last attempt;
    a duplicated line counts once (with a warning)."""
    from clinseek.runs import effective_rows

    run_dir = Path(run_dir)
    path = run_dir / RESULTS
    if run_dir.is_file():
        path = run_dir
    if not path.exists():
        raise UserError(f"no results.jsonl in {run_dir}", hint="pass a run directory written by `clinseek apply`, "
                        "or a results file in the reference system's format with --reference")
    return list(effective_rows(path, warn, "result").values())


def error_summary(rows: list[dict[str, Any]], run_dir: Path | None = None) -> dict[str, Any]:
    """How many episodes ended in `error`, per reason, and the command that runs them again."""
    from clinseek.runs import failure_reasons, resume_command

    reasons = failure_reasons(rows)
    out: dict[str, Any] = {"episodes": len(rows), "errors": sum(reasons.values()), "reasons": reasons}
    if run_dir is not None and Path(run_dir).is_dir():
        manifest_path = Path(run_dir) / MANIFEST
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
        except ValueError:
            manifest = {}
        command = resume_command(Path(run_dir), manifest)
        out["retry_command"] = command if "--retry-errors" in command else command + " --retry-errors"
    return out


def _reasons_text(reasons: dict[str, int], limit: int = 3) -> str:
    items = list(reasons.items())
    text = "; ".join(f"{n} x {r}" for r, n in items[:limit])
    return text + (f"; {len(items) - limit} other reason(s)" if len(items) > limit else "")


def apply_scorers(rows: list[dict[str, Any]], scorers: list[Any], tasks: dict[str, Any] | None = None) -> None:
    """Add plugin scorers' metrics to each row under `extra_scores[<scorer name>]`."""
    for row in rows:
        task = (tasks or {}).get(str(row.get("qid")), row)
        for sc in scorers:
            row.setdefault("extra_scores", {})[sc.name] = sc.score(row.get("answer") or [], task)


def looks_like_reference(path: Path | str) -> bool:
    """A results file in the reference system's format: its rows carry the conversation (`messages`) and none of
    clinseek's result fields (`answer`, `status`)."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.is_file():
        return False
    for _, row in iter_lines(path):
        return "messages" in row and "answer" not in row and "status" not in row
    return False


def score_run(run_dir: Path | str, *, write: bool = True, reference: bool = False,
              benchmark: Path | str | None = None, scorers: list[Any] | None = None,
              warn: Any = None, strict_reference: bool = False) -> dict[str, Any]:
    """Score a run directory (or, with reference=True, a results file of the reference system) and write
    scores.json next to results.jsonl (or next to the reference file). Returns the scores dict. A reference-format
    file is recognised without reference=True (and said so): scoring it as clinseek rows would give zeros."""
    run_dir = Path(run_dir)
    if not reference and looks_like_reference(run_dir):
        reference = True
        (warn or (lambda m: None))(f"{run_dir} is in the reference system's results format (rows with `messages`,"
                                   " no `answer`): scored as with --reference")
    if reference:
        rows = load_reference_results(run_dir, benchmark=benchmark)
        out_path = (run_dir if run_dir.is_dir() else run_dir.parent) / SCORES
    else:
        rows = load_run_rows(run_dir, warn=warn)
        out_path = (run_dir if run_dir.is_dir() else run_dir.parent) / SCORES
    if not rows:
        raise NothingScorable(f"{run_dir} has no episodes: there is nothing to score",
                              hint="run `clinseek apply` (or finish it with --resume) first")
    errors = error_summary(rows, None if reference else run_dir)
    # The reference format marks a missing finish call `error`: a model failure that scores 0, not a crash.
    if not reference and errors["errors"] == len(rows):
        raise NothingScorable(f"all {len(rows)} episode(s) of {run_dir} ended in error: there is no score "
                              f"(reasons: {_reasons_text(errors['reasons'])})",
                              hint="fix the cause (events.log has details), then run them again: " + errors.get(
                                  "retry_command", "clinseek apply RECIPE --resume RUN_DIR --retry-errors"))
    scores = score_rows(rows)
    if not reference:
        scores["errors"] = errors
    if scorers:
        apply_scorers(rows, scorers)
        extra: dict[str, dict[str, float]] = {}
        for sc in scorers:
            vals: dict[str, list[float]] = defaultdict(list)
            for r in rows:
                for k, v in (r.get("extra_scores", {}).get(sc.name) or {}).items():
                    vals[k].append(float(v))
            extra[sc.name] = {k: _mean(v) for k, v in vals.items()}
        scores["extra"] = extra
    scores["source"] = {"path": str(run_dir), "format": "reference" if reference else "clinseek"}
    if strict_reference:
        qids = list(read_benchmark(benchmark)) if benchmark is not None else None
        scores["strict_reference"] = strict_reference_scores(rows, qids)
    if write:
        tmp = out_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(scores, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        tmp.replace(out_path)  # atomic: a reader never sees half a scores.json
    return scores


# The reference system's results format ----------------------------------------------------------------------

def _parse_args(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return value
    if not isinstance(value, str):
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        try:
            return ast.literal_eval(value)  # the reference accepts Python-literal arguments too
        except (ValueError, SyntaxError):
            return None


def reference_answer(messages: list[dict[str, Any]]) -> tuple[list[str], str]:
    """The answer of a reference-format run: the `response` list of its last finish call.

    Returns (answer, source) where source is finish_tool_call, finish_parse_error or no_prediction.
    """
    for msg in reversed(messages or []):
        for tc in reversed(msg.get("tool_calls") or []):
            fn = tc.get("function") or tc  # OpenAI shape, or the canonical {"name", "arguments"}
            if "finish" not in str(fn.get("name", "")).lower():
                continue
            args = _parse_args(fn.get("arguments", {}))
            if args is None:
                return [], "finish_parse_error"
            preds = args.get("response", args.get("answer", [])) if isinstance(args, dict) else args
            if isinstance(preds, str):
                return ([preds.strip()] if preds.strip() else []), "finish_tool_call"
            if isinstance(preds, list):
                return [p for p in preds if isinstance(p, str)], "finish_tool_call"
            return [], "finish_tool_call"
    return [], "no_prediction"


def _label_list(label: Any) -> list[str]:
    """Reference labels are strings, lists of strings, or lists of {name, value} / {name, atc_name} objects:
    read by the task model's one reader, so scoring and tasks agree."""
    from clinseek.tasks import label_names

    return label_names(label)


def _count_tool_calls(messages: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for m in messages or []:
        if m.get("role") == "assistant":
            for tc in m.get("tool_calls") or []:
                counts[str((tc.get("function") or tc).get("name", "unknown"))] += 1
    return dict(counts)


def load_reference_results(path: Path | str, benchmark: Path | str | None = None) -> list[dict[str, Any]]:
    """Read a results file of the reference system (one JSON object per line with `qid`, `messages` in OpenAI
    shape, and `label`; or a directory holding results.jsonl) into rows that score_rows accepts.

    `benchmark` (a ClinSeek-Bench jsonl/json) supplies label, task, task_type and candidates for rows without
    them, keyed by qid. Rows of one qid become run_index 0, 1, ... in file order.
    """
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS
    if not path.exists():
        raise UserError(f"reference results file not found: {path}")
    bench = read_benchmark(benchmark) if benchmark is not None else {}
    rows = []
    index: dict[str, int] = defaultdict(int)
    for lineno, raw in iter_lines(path):   # the file's own line numbers, torn lines skipped
        if "messages" not in raw:
            raise UserError("not a reference results row: no `messages`", where=f"{path}:{lineno}",
                            hint="reference rows carry the OpenAI-format conversation in `messages`")
        qid = str(raw.get("qid"))
        item = bench.get(qid, {})
        answer, source = reference_answer(raw["messages"])
        label = raw.get("label", item.get("label", item.get("ground_truth")))
        if label is None:
            raise UserError(f"no label for qid {qid}", where=f"{path}:{lineno}",
                            hint="give --benchmark with the ClinSeek-Bench file the run was made on")
        counts = _count_tool_calls(raw["messages"])
        rows.append({
            "qid": qid, "run_index": index[qid],
            "task": raw.get("task") or item.get("task") or _task_from_qid(qid),
            "task_type": raw.get("task_type") or item.get("task_type") or "unknown",
            "candidates": raw.get("candidates") or item.get("candidates") or [],
            "answer": answer, "label": _label_list(label),
            "status": "completed" if source == "finish_tool_call" else "error",
            "reason": None if source == "finish_tool_call" else source,
            "tool_calls": sum(counts.values()), "tool_counts": counts,
            "turns": sum(1 for m in raw["messages"] if m.get("role") == "assistant"),
            "usage": raw.get("usage") or {},
        })
        index[qid] += 1
    return rows


def _task_from_qid(qid: str) -> str:
    """The reference builds qids as <task>_<subject>[_<hadm>]; recover the task name when no field says it."""
    from clinseek.tasks import task_from_qid

    return task_from_qid(qid) or "unknown"


def read_benchmark(path: Path | str) -> dict[str, dict[str, Any]]:
    """A ClinSeek-Bench file (JSONL or a JSON array, read like a task file) as qid -> raw row. A row without a qid
    gets the reference's <task>_<subject>[_<hadm>]."""
    from clinseek.tasks import _json_rows

    bpath = Path(path)
    if not bpath.is_file():
        raise UserError(f"benchmark file not found: {bpath}", hint="--benchmark names the ClinSeek-Bench file "
                        "(.jsonl or .json) the run was made on")
    out: dict[str, dict[str, Any]] = {}
    for where, row in _json_rows(bpath.read_text(encoding="utf-8-sig"), bpath):
        if not isinstance(row, dict):
            raise UserError("not a benchmark row (a JSON object with qid, label, ...)", where=where)
        qid = row.get("qid")
        if qid is None and row.get("task") is not None and row.get("subject_id") is not None:
            qid = "_".join(str(x) for x in (row["task"], row["subject_id"], row.get("hadm_id")) if x is not None)
        out[str(qid)] = row
    return out


# Printing --------------------------------------------------------------------------------------------------

def format_table(scores: dict[str, Any]) -> str:
    """A fixed-width table: one line per task, the overall macro line, then one line per task_type."""
    head = (f"{'task':<26} {'n':>5} {'runs':>5} {'P':>6} {'R':>6} {'F1':>6} {'EM':>6} {'YN acc':>7} "
            f"{'tools':>6} {'turns':>6} {'tokens':>8}")
    lines = [head, "-" * len(head)]
    errors = scores.get("errors") or {}
    if errors.get("errors"):
        retry = f"\n  run them again with: {errors['retry_command']}" if errors.get("retry_command") else ""
        lines.insert(0, f"note: {errors['errors']} of {errors['episodes']} episodes ended in error and score 0 "
                        f"here (reasons: {_reasons_text(errors['reasons'])}){retry}")

    def line(name: str, agg: dict[str, Any]) -> str:
        yn = agg.get("yes_no_accuracy")
        yn_s = f"{yn * 100:>7.1f}" if yn is not None else f"{'-':>7}"
        return (f"{name[:26]:<26} {agg.get('questions', 0):>5} {agg.get('runs', 0):>5} "
                f"{agg['precision'] * 100:>6.1f} {agg['recall'] * 100:>6.1f} {agg['f1'] * 100:>6.1f} "
                f"{agg['exact_match'] * 100:>6.1f} {yn_s} {agg.get('tool_calls_avg', 0):>6.1f} "
                f"{agg.get('turns_avg', 0):>6.1f} {agg.get('tokens_avg', 0):>8.0f}")

    for t, agg in scores["per_task"].items():
        lines.append(line(t, agg))
    lines.append("-" * len(head))
    lines.append(line("overall (macro over tasks)", scores["overall"]))
    lines.append(f"{'  micro over questions':<26} {'':>5} {'':>5} {'':>6} {'':>6} "
                 f"{scores['overall']['f1_micro'] * 100:>6.1f}")
    if scores["per_task_type"]:
        lines.append("-" * len(head))
        for t, agg in scores["per_task_type"].items():
            lines.append(line(f"type: {t}", agg))
    strict = scores.get("strict_reference")
    if strict:
        lines.append("-" * len(head))
        lines.append(f"reference script (lower-case only; micro over the {strict['questions_done']} of "
                     f"{strict['questions_total']} questions with results):")
        for t, agg in strict["per_task"].items():
            lines.append(f"  {t[:24]:<24} {agg['questions_done']:>5} {'':>5} {agg['precision'] * 100:>6.1f} "
                         f"{agg['recall'] * 100:>6.1f} {agg['f1'] * 100:>6.1f} {agg['exact_match'] * 100:>6.1f}")
        lines.append(f"  {'overall (micro)':<24} {strict['questions_done']:>5} {strict['runs']:>5} "
                     f"{strict['precision'] * 100:>6.1f} {strict['recall'] * 100:>6.1f} {strict['f1'] * 100:>6.1f} "
                     f"{strict['exact_match'] * 100:>6.1f}   next to clinseek's macro F1 "
                     f"{scores['overall']['f1'] * 100:.1f}")
    return "\n".join(lines)
