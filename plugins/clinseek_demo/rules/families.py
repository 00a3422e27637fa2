"""Which policy a task gets: the demo's task names, and other benchmarks' names by keyword."""
from __future__ import annotations

from typing import Any

from clinseek_demo.rules.answers import norm
from clinseek_demo.rules.catalog import RISK_FAMILIES


# Other benchmarks name their tasks differently (ClinSeek-Bench: "ED_Inpatient_Mortality", ...): keywords map a
# task name onto the policy that fits; any other yes/no risk question gets the mortality (acuity) policy.
FAMILY_KEYWORDS = [("mortality", "mortality"), ("death", "mortality"), ("icu", "icu_transfer_24h"),
                   ("critical", "icu_transfer_24h"), ("readmi", "readmission_30d"), ("los_gt_3", "los_gt_3"),
                   ("los_gt_7", "los_gt_7"), ("length_of_stay", "los_gt_7"), ("diagnos", "diagnosis_ccsr"),
                   ("lab", "lab_orders_24h")]


def policy_family(task: Any) -> str:
    """The policy a task gets: its own family when there is one, else one found by keyword or task type."""
    name = str(getattr(task, "task", "") or "")
    if name in RISK_FAMILIES or name in ("diagnosis_ccsr", "lab_orders_24h") or name.startswith("cxr"):
        return name
    low = name.lower()
    for word, family in FAMILY_KEYWORDS:
        if word in low:
            return family
    cands = {norm(c) for c in getattr(task, "candidates", []) or []}
    if getattr(task, "task_type", "") == "risk_prediction" and cands and cands <= {"yes", "no"}:
        return "mortality"
    return name
