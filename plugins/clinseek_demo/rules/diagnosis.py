"""The diagnosis family: one rule per diagnosis category, from labs, drugs and coded history."""
from __future__ import annotations

from typing import Any

from clinseek_demo.rules.answers import pick
from clinseek_demo.rules.catalog import LABS, VITALS
from clinseek_demo.rules.observations import Decision, latest_values, Observation, parse_table


# Diagnosis categories: what in the observations supports each (matched against the candidates' wording) --------

def has_drug(drugs: list[str], *names: str) -> bool:
    return any(any(n.lower() in d for n in names) for d in drugs)


def has_code(codes: list[str], *prefixes: str) -> bool:
    return any(c.startswith(p) for c in codes for p in prefixes)


DX_RULES: list[tuple[tuple[str, ...], Any]] = [
    (("septicemia", "sepsis"), lambda v, d, c: (v.get("lactate", 0) >= 2 and (v.get("wbc", 0) >= 12 or
                                                 v.get("temp_c", 0) >= 38)) or has_drug(d, "piperacillin")),
    (("pneumonia",), lambda v, d, c: has_drug(d, "azithromycin", "ceftriaxone") or v.get("crp", 0) >= 40),
    (("heart failure",), lambda v, d, c: has_drug(d, "furosemide") and (v.get("ntprobnp", 0) >= 900
                                                                         or has_code(c, "I50", "428"))),
    (("renal failure", "kidney injury"), lambda v, d, c: v.get("creatinine", 0) >= 2.0 and not
     has_code(c, "N18", "585") or v.get("creatinine", 0) >= 3.0),
    (("chronic obstructive", "copd"), lambda v, d, c: has_drug(d, "prednisone", "ipratropium")
     or has_code(c, "J44", "496")),
    (("gastrointestinal hemorrhage", "gi bleed"), lambda v, d, c: has_drug(d, "pantoprazole", "octreotide")
     and v.get("hemoglobin", 99) < 11),
    (("pneumothorax",), lambda v, d, c: has_drug(d, "oxycodone") and v.get("spo2", 100) < 95),
    (("respiratory failure",), lambda v, d, c: v.get("spo2", 100) < 90 or v.get("pco2", 0) >= 55),
    (("nonspecific chest pain",), lambda v, d, c: has_drug(d, "nitroglycerin", "aspirin")
     and v.get("troponin_t", 0) < 0.05),
    (("myocardial infarction",), lambda v, d, c: has_drug(d, "aspirin", "nitroglycerin")
     and v.get("troponin_t", 0) >= 0.1),
    (("essential hypertension", "hypertension"), lambda v, d, c: has_drug(d, "amlodipine")
     or has_code(c, "I10", "401")),
    (("dysrhythmia", "atrial fibrillation"), lambda v, d, c: has_drug(d, "apixaban") or has_code(c, "I48", "427")),
    (("diabetes",), lambda v, d, c: has_drug(d, "insulin") or has_code(c, "E11", "250")),
    (("lipid",), lambda v, d, c: has_code(c, "E78", "272")),
    (("fluid and electrolyte", "electrolyte"), lambda v, d, c: v.get("sodium", 140) < 133),
    (("chronic kidney",), lambda v, d, c: has_code(c, "N18", "585")),
    (("posthemorrhagic anemia", "anemia"), lambda v, d, c: v.get("hemoglobin", 99) < 8),
]


def decide_diagnosis(candidates: list[str], obs: dict[str, Observation], max_dx: int) -> Decision:
    values = {**latest_values(obs.get("vitals"), VITALS), **latest_values(obs.get("labs"), LABS)}
    drugs = [r.get("drug", "").lower() for r in parse_table(obs["meds"].text)] if "meds" in obs else []
    codes = [r.get("icd_code", "") for r in parse_table(obs["history"].text)] if "history" in obs else []
    chosen, reasons = [], []
    for words, rule in DX_RULES:
        cand = pick(candidates, *words) if candidates else None
        if cand is None or cand in chosen:
            continue
        try:
            hit = bool(rule(values, drugs, codes))
        except TypeError:
            hit = False
        if hit:
            chosen.append(cand)
            reasons.append(cand)
    chosen = chosen[: max_dx]
    evidence = [o.evidence_id for k in ("labs", "meds", "history", "vitals") if (o := obs.get(k))
                and o.evidence_id and not o.is_error]
    if not chosen:
        fallback = pick(candidates, "chest pain") or (candidates[:1] if candidates else [])
        fallback_list = [fallback] if isinstance(fallback, str) else list(fallback)
        return Decision(fallback_list, evidence, "No active problem met a rule: answering the most common "
                                                 f"category {fallback_list}.")
    return Decision(chosen, evidence, "Active problems from treatments, labs and coded history: "
                                      + "; ".join(reasons) + ".")
