"""The `rules` host: an offline, deterministic baseline that seeks evidence through the same tools an LLM gets.

Each task family has a written-down policy (docs/baseline.md): a fixed plan of tool calls (ehr_sql queries,
kb_search, cxr_*), then a decision computed only from the observations in `messages`. The host reads the task's
family, question, candidates and prediction time from `ctx.task`; it never reads the label and never touches the
database except through tool calls, so its trajectories are ordinary, valid tool-use trajectories.

How a turn works: every call the host makes has the id `rules_<step>`; the tool replies carry that id back, so the
host knows which steps are done from the messages alone (no hidden state, safe with concurrent episodes). When
no step is left (or a tool is missing) it calls `finish` with the answer and the evidence ids it used.

Curated input (`agent.evidence: curated`): the episode offers no data tools, only `finish`, and the prompt carries
an evidence package (the ehr curator's text: "Events in the 24 h before ...", one event per line). The host parses
the package's vitals, labs, ED vitals, triage, prescriptions and admission lines into the same observation tables
its ehr_sql queries return, and decides with the same rules; it cites no evidence ids (there are none) and says in
its text which events it used. Families the package cannot serve (CXR: it carries no images) get the prior.
"""
from __future__ import annotations

import re
import time
from typing import Any, ClassVar, Literal

from pydantic import Field

from clinseek.hosts.base import GenerateContext, Host, HostConfig, HostResponse, ToolCall, Usage
from clinseek_demo.rules.catalog import DEFAULT_THRESHOLDS, RISK_FAMILIES
from clinseek_demo.rules.cxr import cxr_prior, decide_cxr
from clinseek_demo.rules.diagnosis import decide_diagnosis
from clinseek_demo.rules.families import policy_family
from clinseek_demo.rules.labs import decide_lab_orders
from clinseek_demo.rules.observations import Decision, Observation, observations, parse_table, prediction_time, Step
from clinseek_demo.rules.package import find_package, package_observations
from clinseek_demo.rules.queries import (CONTEXT_SQL, ED_SQL, HISTORY_SQL, KB_QUERIES, LABS_SQL, MEDS_SQL,
                                         VITALS_SQL, lab_orders_sql)
from clinseek_demo.rules.risk import decide_risk


class RulesConfig(HostConfig):
    """Options of the rules host. `thresholds` override the per-family cut-offs of the warning score;
    `use_kb` adds one knowledge-base lookup per episode (cited as the rule's rationale) when kb tools exist."""

    provider: Literal["rules"] = "rules"
    thresholds: dict[str, float] = Field(default_factory=dict)
    use_kb: bool = True
    cxr_threshold: float = Field(0.5, ge=0.0, le=1.0,
                                 description="probability at or above which a CXR finding counts as present "
                                             "(used when the model card gives no threshold)")
    max_dx: int = Field(6, ge=1, description="at most this many diagnosis categories in an answer")

# The host ------------------------------------------------------------------------------------------------------

class RulesHost(Host):
    """Deterministic evidence-seeking baseline; no model, no network, no tokens."""

    provider: ClassVar[str] = "rules"
    Config: ClassVar[type[HostConfig]] = RulesConfig

    def default_site_local(self) -> bool:
        return True  # nothing leaves the process

    def describe(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": "rules-v1"}

    @property
    def thresholds(self) -> dict[str, float]:
        return {**DEFAULT_THRESHOLDS, **getattr(self.config, "thresholds", {})}

    async def generate(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       ctx: GenerateContext) -> HostResponse:
        t0 = time.perf_counter()
        task = ctx.task
        family = policy_family(task)
        available = {t["name"]: t for t in tools}
        obs = observations(messages)
        package = find_package(messages) if set(available) <= {"finish"} else None
        if package is not None:
            return self._finish_curated(family, task, available, package, t0)
        for step in self.plan(family, task, available, obs):
            if step.key not in obs:
                call = ToolCall(id=f"rules_{step.key}", name=step.tool, arguments=step.arguments)
                return HostResponse(content=step.why, tool_calls=[call], latency_s=time.perf_counter() - t0,
                                    finish_reason="tool_calls")
        decision = self.decide(family, task, available, obs)
        if set(available) <= {"finish"} and not obs:
            decision.reasoning = ("No data tools and no evidence package in the curator's format (\"Events in the "
                                  "... h before ...\") in the prompt. " + decision.reasoning)
        return self._finish(decision, available, len(obs), t0)

    def _finish_curated(self, family: str, task: Any, available: dict[str, Any], package: str,
                        t0: float) -> HostResponse:
        """Curated input: decide from the package's events with the same rules; no evidence ids to cite."""
        obs, used = package_observations(package)
        if family.startswith("cxr"):
            prior = cxr_prior(family, list(getattr(task, "candidates", []) or []))
            decision = Decision(prior, [], "The curated evidence package carries no images, and the CXR rules read "
                                           f"model output on an image: falling back to the prior {prior}.")
        else:
            decision = self.decide(family, task, available, obs)
            decision.evidence = []
            decision.reasoning = ("From the curated evidence package: " + ("; ".join(used) or "no usable events")
                                  + ". " + decision.reasoning)
        return self._finish(decision, available, 0, t0)

    def _finish(self, decision: Decision, available: dict[str, Any], n_obs: int, t0: float) -> HostResponse:
        args: dict[str, Any] = {"answer": decision.answer}
        if "finish" in available:
            props = available["finish"].get("parameters", {}).get("properties", {})
            if "evidence" in props:
                args["evidence"] = [e for e in dict.fromkeys(decision.evidence) if e]
        call = ToolCall(id=f"rules_finish_{n_obs}", name="finish", arguments=args)
        return HostResponse(content=decision.reasoning, tool_calls=[call], usage=Usage(),
                            latency_s=time.perf_counter() - t0, finish_reason="tool_calls")

    # Plans ---------------------------------------------------------------------------------------------------
    def plan(self, family: str, task: Any, tools: dict[str, Any], obs: dict[str, Observation]) -> list[Step]:
        steps: list[Step] = []
        sql = "ehr_sql" in tools

        def q(key: str, query: str, why: str) -> None:
            if sql:
                steps.append(Step(key, "ehr_sql", {"query": query}, why))

        def kb(key: str) -> None:
            if self.config.use_kb and "kb_search" in tools and key in KB_QUERIES:
                args = _fit_args(tools["kb_search"], {"query": KB_QUERIES[key]}, {"limit": 2, "k": 2, "top_k": 2})
                steps.append(Step("kb", "kb_search", args, "Look up the rule's clinical rationale."))

        if family in RISK_FAMILIES:
            q("vitals", VITALS_SQL, "Latest ICU vital signs for an early-warning score.")
            q("ed", ED_SQL, "Latest emergency-department vital signs and triage acuity of this admission.")
            q("labs", LABS_SQL, "Latest and first labs of this admission (lactate, creatinine, white cells, ...).")
            q("context", CONTEXT_SQL, "Age, admission type, ICU stay and number of admissions so far.")
            q("meds", MEDS_SQL, "Treatments started this admission (they reveal the active problems).")
            q("history", HISTORY_SQL, "Chronic conditions coded on earlier admissions.")
            kb(family)
        elif family.startswith("diagnosis"):
            q("vitals", VITALS_SQL, "Latest ICU vital signs.")
            q("ed", ED_SQL, "Emergency-department vital signs of this admission.")
            q("labs", LABS_SQL, "Latest labs that mark active problems.")
            q("meds", MEDS_SQL, "Medications started this admission (treatments reveal active problems).")
            q("history", HISTORY_SQL, "Conditions coded on earlier admissions.")
            kb("diagnosis_ccsr")
        elif family == "lab_orders_24h":
            pt = prediction_time(task)
            if pt is not None:
                q("recent_labs", lab_orders_sql(pt), "How often each lab has been drawn this admission.")
        elif family.startswith("cxr"):
            steps += self._cxr_plan(family, task, tools, obs)
        return steps

    def _cxr_plan(self, family: str, task: Any, tools: dict[str, Any], obs: dict[str, Observation]) -> list[Step]:
        steps: list[Step] = []
        named = list(getattr(task, "study_ids", []) or [])  # the studies the question is about (public fields)
        if "cxr_studies" in tools:
            steps.append(Step("studies", "cxr_studies", {}, "List this patient's chest X-ray studies up to the "
                                                            "prediction time."))
            if "studies" not in obs:
                return steps
        studies = named or _study_ids(obs.get("studies"), task)
        if family == "cxr_change" and "cxr_compare" in tools and len(studies) >= 2:
            args = _fit_args(tools["cxr_compare"], {}, {"study_id_a": studies[-2], "study_id_b": studies[-1]})
            steps.append(Step("compare", "cxr_compare", args, "Compare the earlier study with the later one."))
        elif family == "cxr_change" and "cxr_classify" in tools and len(studies) >= 2:
            for key, sid in (("classify_a", studies[-2]), ("classify", studies[-1])):
                steps.append(Step(key, "cxr_classify", _fit_args(tools["cxr_classify"], {}, {"study_id": sid}),
                                  f"Classify findings on study {sid}."))
        elif "cxr_classify" in tools and studies:
            sid = studies[0] if named else studies[-1]
            steps.append(Step("classify", "cxr_classify", _fit_args(tools["cxr_classify"], {}, {"study_id": sid}),
                              f"Classify findings on study {sid}."))
        return steps

    # Decisions -----------------------------------------------------------------------------------------------
    def decide(self, family: str, task: Any, tools: dict[str, Any], obs: dict[str, Observation]) -> Decision:
        candidates = list(getattr(task, "candidates", []) or [])
        if family in RISK_FAMILIES:
            return decide_risk(family, task, candidates, obs, self.thresholds.get(family, 7.0))
        if family.startswith("diagnosis"):
            return decide_diagnosis(candidates, obs, self.config.max_dx)
        if family == "lab_orders_24h":
            return decide_lab_orders(task, candidates, obs)
        if family.startswith("cxr"):
            return decide_cxr(family, task, candidates, obs, tools, self.config.cxr_threshold)
        prior = candidates[-1:] if candidates else []
        return Decision(prior, [], f"No rule for task family {family!r}: answering the prior {prior}.")


# Helpers for tools whose argument names differ between toolsets ---------------------------------------------------

def _fit_args(schema: dict[str, Any], required: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    """Keep the arguments the tool's schema accepts; `required` ones are always passed."""
    props = (schema.get("parameters") or {}).get("properties", {})
    args = dict(required)
    for k, v in optional.items():
        if k in props and k not in args:
            args[k] = v
    return args


def _study_ids(obs: Observation | None, task: Any) -> list[Any]:
    """Study ids in time order from the cxr_studies observation (a table, or JSON), else the task's list."""
    ids: list[Any] = []
    if obs is not None and not obs.is_error:
        for row in parse_table(obs.text):
            sid = row.get("study_id")
            if sid:
                ids.append(int(sid) if sid.isdigit() else sid)
        if not ids:
            ids = [int(x) for x in re.findall(r"\bstudy[_ ]id\W+(\d+)", obs.text)]
    if not ids:
        ids = list(getattr(task, "study_ids", []) or [])
    return ids
