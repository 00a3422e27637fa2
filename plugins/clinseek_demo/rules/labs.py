"""The lab-order family: which order groups a morning draw will include."""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from clinseek_demo.rules.answers import norm, pick
from clinseek_demo.rules.observations import Decision, num, Observation, parse_table, prediction_time


# Lab order groups: the d_labitems labels that mark a draw of the group.
LAB_GROUP_MARKERS: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
    (("basic metabolic",), ("Sodium", "Urea Nitrogen", "Creatinine")),
    (("complete blood", "blood count"), ("Hemoglobin", "White Blood Cells", "Platelet Count")),
    (("magnesium", "phosphate"), ("Magnesium", "Phosphate")),
    (("lactate",), ("Lactate",)),
    (("liver",), ("Alanine Aminotransferase (ALT)", "Asparate Aminotransferase (AST)", "Bilirubin, Total")),
    (("inr", "coagulation"), ("INR(PT)",)),
    (("troponin",), ("Troponin T",)),
    (("bnp",), ("NTproBNP",)),
    (("c-reactive", "crp"), ("C-Reactive Protein",)),
    (("blood gas",), ("pH", "pO2", "pCO2")),
]
# Routine panels drawn at (nearly) every morning draw; other groups follow the patient's own habit (see
# _decide_lab_orders). Chosen on the development cohort (seed 11), like the risk thresholds.
ALWAYS_DRAWN = ("basic metabolic", "complete blood", "magnesium")
HABIT_SHARE = 2 / 3


def decide_lab_orders(task: Any, candidates: list[str], obs: dict[str, Observation]) -> Decision:
    o = obs.get("recent_labs")
    rows = parse_table(o.text) if o and not o.is_error else []
    pt = prediction_time(task)
    habit: dict[str, float] = {}  # label -> share of hospital days it was drawn on, if drawn in the last 36 h
    for r in rows:
        drawn, days = num(r.get("days_drawn")), num(r.get("days_in_hospital"))
        try:
            last = datetime.fromisoformat(r.get("last_drawn", ""))
        except ValueError:
            last = None
        recent = last is not None and (pt is None or pt - last <= timedelta(hours=36))
        if drawn and days and recent:
            habit[r.get("label", "")] = drawn / days
    chosen, why = [], []
    for words, markers in LAB_GROUP_MARKERS:
        cand = pick(candidates, *words)
        if cand is None or cand in chosen:
            continue
        share = max((habit.get(m, 0.0) for m in markers), default=0.0)
        if any(w in norm(cand) for w in ALWAYS_DRAWN):
            chosen.append(cand)
        elif share >= HABIT_SHARE:
            chosen.append(cand)
            why.append(f"{cand} ({share:.0%} of days)")
    if o is None:
        return Decision(chosen, [], "No lab data could be read: answering the routine panels only.")
    return Decision(chosen, [o.evidence_id] if o.evidence_id else [],
                    "Routine panels, plus the groups drawn on at least two thirds of the hospital days so far and "
                    "in the last 36 hours: " + ("; ".join(why) or "none") + ".")
