"""The risk families (mortality, length of stay, readmission, ICU transfer): an early-warning score plus
feature points."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from clinseek_demo.rules.answers import yes_no
from clinseek_demo.rules.catalog import LABS, VITALS
from clinseek_demo.rules.diagnosis import has_code, has_drug
from clinseek_demo.rules.observations import (Decision, ed_values, first_values, latest_values, num, Observation,
                                              parse_table, prediction_time)


# The early-warning score --------------------------------------------------------------------------------------

def _band(v: float | None, bands: list[tuple[float, float, int]]) -> int:
    if v is None:
        return 0
    for lo, hi, pts in bands:
        if lo <= v < hi:
            return pts
    return 0


INF = float("inf")


def warning_score(v: dict[str, float], age: float | None) -> tuple[float, list[str]]:
    """NEWS2 bands for heart rate, respiratory rate, SpO2, systolic pressure and temperature, plus lactate,
    creatinine, white cells, platelets and age points. Returns (points, the parts that scored)."""
    parts = {
        "heart_rate": _band(v.get("heart_rate"), [(0, 41, 3), (41, 51, 1), (91, 111, 1), (111, 131, 2),
                                                  (131, INF, 3)]),
        "resp_rate": _band(v.get("resp_rate"), [(0, 9, 3), (9, 12, 1), (21, 25, 2), (25, INF, 3)]),
        "spo2": _band(v.get("spo2"), [(0, 92, 3), (92, 94, 2), (94, 96, 1)]),
        "sbp": _band(v.get("sbp"), [(0, 91, 3), (91, 101, 2), (101, 111, 1), (220, INF, 3)]),
        "temp_c": _band(v.get("temp_c"), [(0, 35.05, 3), (35.05, 36.05, 1), (38.05, 39.05, 1), (39.05, INF, 2)]),
        "lactate": _band(v.get("lactate"), [(2, 4, 2), (4, INF, 3)]),
        "creatinine": _band(v.get("creatinine"), [(1.5, 3.5, 1), (3.5, INF, 2)]),
        "wbc": _band(v.get("wbc"), [(0, 4, 1), (12, 20, 1), (20, INF, 2)]),
        "platelets": _band(v.get("platelets"), [(0, 100, 1)]),
        "age": _band(age, [(65, 80, 1), (80, INF, 2)]),
    }
    scored = [f"{k} {v.get(k, age) if k != 'age' else age:.4g} (+{p})" for k, p in parts.items() if p]
    return float(sum(parts.values())), scored


# Drugs that reveal an acute problem being treated (MIMIC prescriptions.drug spelling, matched case-insensitively).
PROBLEM_DRUGS = {"sepsis": ("piperacillin", "vancomycin", "meropenem", "cefepime"),
                 "pneumonia": ("azithromycin", "ceftriaxone"), "heart failure": ("furosemide",),
                 "copd exacerbation": ("prednisone", "ipratropium"), "gi bleed": ("pantoprazole", "octreotide"),
                 "pneumothorax": ("oxycodone",), "chest pain": ("nitroglycerin",)}
CHRONIC_DRUGS = ("insulin", "amlodipine", "apixaban", "tiotropium")


def risk_features(obs: dict[str, Observation], prediction_time: datetime | None = None) -> dict[str, Any]:
    """What the risk policies read from the observations: latest vitals (ICU charted, else the ED's), latest labs
    and their change since the first draw of this admission, age, admission type, ICU stay so far, earlier
    admissions, chronic conditions coded before or treated, problems under treatment, triage acuity, hours since
    admission."""
    import math

    ed = ed_values(obs.get("ed"))
    icu = latest_values(obs.get("vitals"), VITALS)
    labs = latest_values(obs.get("labs"), LABS)
    first = first_values(obs.get("labs"))
    values = {**{k: v for k, v in ed.items() if k != "acuity"}, **icu, **labs}
    ctx = parse_table(obs["context"].text) if "context" in obs and not obs["context"].is_error else []
    row = ctx[0] if ctx else {}
    codes = ([r.get("icd_code", "") for r in parse_table(obs["history"].text)]
             if "history" in obs and not obs["history"].is_error else [])
    drugs = ([r.get("drug", "").lower() for r in parse_table(obs["meds"].text)]
             if "meds" in obs and not obs["meds"].is_error else [])
    problems = sorted(p for p, names in PROBLEM_DRUGS.items() if has_drug(drugs, *names))
    chronic = sum(has_code(codes, p) for p in ("I50", "J44", "N18")) + sum(has_drug(drugs, d) for d in CHRONIC_DRUGS)

    def rise(key: str) -> float:
        a, b = first.get(key), labs.get(key)
        return math.log(b / a) if a and b and a > 0 and b > 0 else 0.0

    hours = None
    admit = row.get("admittime")
    if admit and prediction_time is not None:
        try:
            hours = (prediction_time - datetime.fromisoformat(admit)).total_seconds() / 3600
        except ValueError:
            hours = None
    return {"values": values, "age": num(row.get("anchor_age")),
            "elective": "elective" in row.get("admission_type", "").lower(),
            "icu": (num(row.get("icu_stays_this_admission")) or 0) > 0,
            "earlier_admissions": max((num(row.get("admissions_so_far")) or 1) - 1, 0),
            "chronic": chronic, "problems": problems, "acuity": ed.get("acuity"),
            "lactate_rise": rise("lactate"), "creatinine_rise": rise("creatinine"), "hours": hours}


# Points per feature for each risk family, on top of the warning score. Set by hand, small and readable, and
# checked on a development cohort (seed 11, never the demo benchmark) with bench/rules_calibrate.py, whose --fit
# prints the logistic fit they are a rounded, simplified form of. Written down in docs/baseline.md.
RISK_WEIGHTS: dict[str, dict[str, float]] = {
    "mortality": {"icu": 2, "age_decade": 1, "problems": 1, "lactate_rise": 2, "chronic": 0.5},
    "los_gt_3": {"icu": 2, "non_elective": 1, "problems": 1},
    "los_gt_7": {"icu": 2, "non_elective": 1, "problems": 1, "age_decade": 0.5},
    "icu_transfer_24h": {"acuity_below_3": 1, "problems": 1, "lactate_rise": 2, "creatinine_rise": 1},
    "readmission_30d": {"earlier_admissions": 1, "chronic": 2, "problems": 1, "age_decade": 0.5, "ews": -0.5},
}


def feature_vector(f: dict[str, Any]) -> dict[str, float]:
    age = f["age"] if f["age"] is not None else 65.0
    acuity = f["acuity"] if f["acuity"] is not None else 3.0
    return {"icu": float(f["icu"]), "non_elective": float(not f["elective"]), "age_decade": (age - 65) / 10,
            "problems": float(len(f["problems"])), "chronic": float(f["chronic"]),
            "earlier_admissions": float(min(f["earlier_admissions"], 3)), "acuity_below_3": max(0.0, 3 - acuity),
            "lactate_rise": f["lactate_rise"], "creatinine_rise": f["creatinine_rise"]}


def risk_points(family: str, f: dict[str, Any], weights: dict[str, dict[str, float]] | None = None
                ) -> tuple[float, list[str]]:
    """The warning score plus the family's points table (see RISK_WEIGHTS); returns (points, what scored)."""
    ews, parts = warning_score(f["values"], f["age"])
    table = (weights or RISK_WEIGHTS).get(family, {})
    x = feature_vector(f)
    x["ews"] = ews
    points = ews
    for name, w in table.items():
        n = w * x.get(name, 0.0)
        if n:
            points += n
            label = ", ".join(f["problems"]) if name == "problems" else f"{x[name]:.3g}"
            parts.append(f"{name} {label} ({'+' if n > 0 else ''}{n:.3g})")
    return round(points, 2), parts


def decide_risk(family: str, task: Any, candidates: list[str], obs: dict[str, Observation],
                threshold: float) -> Decision:
    f = risk_features(obs, prediction_time(task))
    if not f["values"]:
        return Decision([yes_no(candidates, False)], [],
                        "No vitals or labs could be read (no ehr_sql tool, or the queries failed): falling "
                        "back to the prior 'no', the majority answer for this family.")
    points, parts = risk_points(family, f)
    evidence = [o.evidence_id for k in ("vitals", "ed", "labs", "context", "meds", "history")
                if (o := obs.get(k)) and o.evidence_id and not o.is_error]
    if "kb" in obs and obs["kb"].evidence_id and not obs["kb"].is_error:
        evidence.append(obs["kb"].evidence_id)
    yes = points >= threshold
    why = (f"Warning score {points:g} (threshold {threshold:g} for {family}): "
           f"{'; '.join(parts) or 'nothing abnormal'}. Answer: {'yes' if yes else 'no'}.")
    return Decision([yes_no(candidates, yes)], evidence, why)
