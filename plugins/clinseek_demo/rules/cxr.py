"""The CXR families: finding probabilities from the cxr tools' replies, change between studies, the prior."""
from __future__ import annotations

import json
import re
from typing import Any

from clinseek_demo.rules.answers import norm, pick, yes_no
from clinseek_demo.rules.observations import EID_PREFIX, Decision, num, Observation, parse_table


CXR_FINDING_WORDS = {"cardiomegaly": ("cardiomegaly", "enlarged heart"), "pleural_effusion": ("effusion",),
                     "consolidation": ("consolidation",), "pulmonary_edema": ("edema",),
                     "pneumothorax": ("pneumothorax",), "atelectasis": ("atelectasis",),
                     "no_finding": ("no finding", "normal")}

_PROB_LINE = re.compile(r"([A-Za-z][A-Za-z _/-]{2,40}?)\s*[:|=]\s*(?:p\s*=\s*)?([01](?:\.\d+)?)\b(?:[^\n]*?"
                        r"threshold\D*([01](?:\.\d+)?))?")


def finding_probabilities(text: str) -> dict[str, tuple[float, float | None]]:
    """finding -> (probability, the model card's threshold if the observation states one)."""
    out: dict[str, tuple[float, float | None]] = {}
    rows = parse_table(text)
    if rows and any("prob" in k.lower() for k in rows[0]):
        pkey = next(k for k in rows[0] if "prob" in k.lower())
        fkey = next((k for k in rows[0] if k.lower() in ("finding", "label", "name")), list(rows[0])[0])
        tkey = next((k for k in rows[0] if "threshold" in k.lower()), None)
        for r in rows:
            p = num(r.get(pkey))
            if p is not None:
                out[norm(r[fkey]).replace(" ", "_")] = (p, num(r.get(tkey)) if tkey else None)
        return out
    try:
        data = json.loads(text)
        if isinstance(data, dict):
            for k, v in data.items():
                if isinstance(v, (int, float)):
                    out[norm(k).replace(" ", "_")] = (float(v), None)
            return out
    except (json.JSONDecodeError, TypeError):
        pass
    for m in _PROB_LINE.finditer(text):
        out.setdefault(norm(m.group(1)).replace(" ", "_"), (float(m.group(2)), num(m.group(3))))
    return out


def fmt_probs(probs: dict[str, tuple[float, float | None]]) -> str:
    return ", ".join(f"{k} {p:.2f}" for k, (p, _) in sorted(probs.items())) or "no probabilities read"


def question_finding(question: str, obs: Observation) -> str | None:
    """The finding a presence question is about: named in the classify call's arguments, else in the question."""
    for key in ("finding", "label"):
        if key in obs.arguments:
            return norm(obs.arguments[key]).replace(" ", "_")
    q = norm(question)
    for finding, words in CXR_FINDING_WORDS.items():
        if finding != "no_finding" and any(norm(w) in q for w in words):
            return finding
    return None


def _finding_row(rows: list[dict[str, str]], finding: str | None) -> dict[str, str] | None:
    for r in rows:
        name = norm(r.get("label") or r.get("finding") or "").replace(" ", "_")
        if finding and (name == finding or finding in name or name in finding):
            return r
    return None


def change_answer(obs: dict[str, Observation], finding: str | None, candidates: list[str],
                   default_threshold: float) -> tuple[list[str], str]:
    """new / resolved / persistent for the question's finding: the comparison's status at the model's thresholds;
    from two classifications when there is no compare tool. Both absent: the direction of the change decides."""
    def answer(word: str) -> list[str]:
        return [pick(candidates, word) or word] if candidates else [word]

    if "compare" in obs and not obs["compare"].is_error:
        row = _finding_row(parse_table(obs["compare"].text), finding)
        if row is None:
            return answer("persistent"), f"The comparison does not list {finding}: answering 'persistent'."
        status = (row.get("status") or "").strip().lower()
        if status in ("new", "resolved", "persistent"):
            return answer(status), f"CXR comparison for {finding}: {status} at the model's thresholds."
        delta = (num(row.get("b")) or 0) - (num(row.get("a")) or 0)
        word = "new" if delta > 0.1 else "resolved" if delta < -0.1 else "persistent"
        return answer(word), (f"CXR comparison: {finding} below threshold on both studies; its probability moved "
                              f"{delta:+.2f}, read as {word}.")
    pa = finding_probabilities(obs["classify_a"].text).get(finding or "") if "classify_a" in obs else None
    pb = finding_probabilities(obs["classify"].text).get(finding or "") if "classify" in obs else None
    if pa is None or pb is None:
        return answer("persistent"), f"No model output for {finding}: answering 'persistent'."
    on_a = pa[0] >= (pa[1] if pa[1] is not None else default_threshold)
    on_b = pb[0] >= (pb[1] if pb[1] is not None else default_threshold)
    word = {(False, True): "new", (True, False): "resolved"}.get((on_a, on_b), "persistent")
    return answer(word), f"{finding}: {pa[0]:.2f} then {pb[0]:.2f} -> {word}."


def cxr_prior(family: str, candidates: list[str]) -> list[str]:
    if family == "cxr_finding_presence":
        return [yes_no(candidates, False)]
    if family == "cxr_change":
        return [pick(candidates, "persistent") or (candidates[0] if candidates else "persistent")]
    return [pick(candidates, "no finding", "normal") or (candidates[0] if candidates else "no finding")]


def decide_cxr(family: str, task: Any, candidates: list[str], obs: dict[str, Observation],
               tools: dict[str, Any], cxr_threshold: float) -> Decision:
    source = obs.get("compare") or obs.get("classify")
    if source is None or source.is_error:
        missing = [t for t in ("cxr_studies", "cxr_classify", "cxr_compare") if t not in tools]
        prior = cxr_prior(family, candidates)
        why = ("No CXR model output" + (f" (this recipe has no {', '.join(missing)})" if missing else "")
               + f": falling back to the prior {prior}.")
        return Decision(prior, [], why)
    text = EID_PREFIX.sub("", source.text)
    evidence = [e for e in (obs["studies"].evidence_id if "studies" in obs else None, source.evidence_id) if e]
    if family == "cxr_change":
        finding = question_finding(str(getattr(task, "question", "")), source)
        answer, why = change_answer(obs, finding, candidates, cxr_threshold)
        evidence += [o.evidence_id for k in ("classify_a",) if (o := obs.get(k)) and o.evidence_id]
        return Decision(answer, evidence, why)
    probs = finding_probabilities(text)
    present = {f for f, (p, thr) in probs.items() if p >= (thr if thr is not None else cxr_threshold)}
    if family == "cxr_finding_presence":
        finding = question_finding(str(getattr(task, "question", "")), source)
        yes = finding in present if finding else bool(present - {"no_finding"})
        return Decision([yes_no(candidates, yes)], evidence,
                        f"CXR model: {fmt_probs(probs)}; present at threshold: {sorted(present) or 'none'}.")
    chosen = []
    for f in sorted(present):
        cand = pick(candidates, *CXR_FINDING_WORDS.get(f, (f.replace("_", " "),))) if candidates else f
        if cand and cand not in chosen:
            chosen.append(cand)
    if not chosen:
        chosen = [pick(candidates, "no finding", "normal") or "No Finding"] if candidates else ["no finding"]
    return Decision(chosen, evidence, f"CXR model: {fmt_probs(probs)}; findings at threshold: {chosen}.")
