"""The recipe format, version 1: pydantic models with unknown keys refused. docs/recipes.md documents each field."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ToolUse(_Strict):
    use: str = Field(description="registered toolset name, e.g. ehr, kb, cxr")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with",
                                  description="the toolset's own configuration, validated by the toolset")


class Prompts(_Strict):
    system: str | None = None
    user: str | None = None


class TaskFilter(_Strict):
    task: list[str] | None = None
    task_type: list[str] | None = None
    qid: list[str] | None = None

    @field_validator("task", "task_type", "qid", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, (str, int)) else v


class TasksSpec(_Strict):
    source: str = "jsonl"
    path: str | None = None
    filter: TaskFilter | None = None
    limit: int | None = Field(default=None, ge=1)
    sample: int | None = Field(default=None, ge=1, description="random sample of this many tasks (seeded)")
    seed: int = 0
    on_error: Literal["skip", "fail"] = "skip"
    missing_patient: Literal["fail", "skip"] = Field(
        default="fail", description="a task whose patient or admission the ehr database lacks: fail (the run does "
                                    "not start, naming the first ones) or skip (run the others, counted)")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class CuratedSpec(_Strict):
    source: Literal["auto", "task", "curator"] = Field(
        default="auto", description="auto: the task's `input` when it has one, else the curator; task: always the "
                                    "task's `input`; curator: always the ehr curator with the window and cap below")
    window_hours: float = Field(default=24.0, gt=0)
    max_events: int = Field(default=100, ge=1)


class AgentSpec(_Strict):
    max_turns: int = Field(default=20, ge=1)
    max_tool_calls: int = Field(default=40, ge=0)
    timeout_s: float = Field(default=600.0, gt=0)
    on_text_reply: Literal["remind", "answer", "fail"] = "remind"
    max_observation_chars: int = Field(default=8000, ge=200)
    max_cost_usd: float | None = Field(default=None, gt=0)
    evidence: Literal["seek", "curated"] = "seek"
    finish_on_last_turn: bool = Field(default=True, description="the last turn, and turns after max_tool_calls is "
                                                                "spent, offer only finish")
    finish_after_repeated_turns: int = Field(
        default=2, ge=0, description="after this many turns in a row of nothing but repeated calls, offer only "
                                     "finish (0: never)")
    curated: CuratedSpec = Field(default_factory=CuratedSpec)
    tools_by_task: dict[str, list[str]] = Field(
        default_factory=dict, description="the tools offered per task name or task type (the task name wins; "
                                          "finish always); tasks not listed get every tool. Small models choose "
                                          "better from a short list")

    def tools_for(self, task: Any) -> list[str] | None:
        """The tool names `tools_by_task` offers for `task`, or None for all."""
        for key in (getattr(task, "task", None), getattr(task, "task_type", None)):
            if key in self.tools_by_task:
                return self.tools_by_task[key]
        return None


class OutputSpec(_Strict):
    mode: Literal["inference", "trajectories"] = "inference"
    dir: str = "runs"
    export: dict[str, Any] = Field(default_factory=dict,
                                   description="trajectory export options (formats and filters)")
    report: bool = True
    scorers: list[str] = Field(default_factory=list,
                               description="registered scorers (plugins' too) run after the built-in set F1; "
                                           "their means go under `extra` in scores.json")


class Governance(_Strict):
    allow_external_hosts: bool = False
    site_hosts: list[str] = Field(default_factory=list,
                                  description="host names, *.domain suffixes, addresses or networks that are inside "
                                              "the site besides loopback and private ranges (also `site_hosts:` "
                                              "in the site file)")


class HostSpec(BaseModel):
    """`provider` plus the provider's own options (validated against the provider's Config)."""

    model_config = ConfigDict(extra="allow")
    provider: str


class Recipe(_Strict):
    clinseek: Literal[1] = Field(description="recipe format version")
    name: str
    description: str = ""
    extends: str | None = None
    host: HostSpec
    tools: list[ToolUse] = Field(default_factory=list)
    prompts: Prompts = Field(default_factory=Prompts)
    tasks: TasksSpec = Field(default_factory=TasksSpec)
    agent: AgentSpec = Field(default_factory=AgentSpec)
    output: OutputSpec = Field(default_factory=OutputSpec)
    runs_per_task: int = Field(default=1, ge=1)
    governance: Governance = Field(default_factory=Governance)

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must not be empty")
        return v

    @model_validator(mode="after")
    def _unique_toolsets(self) -> "Recipe":
        seen = set()
        for t in self.tools:
            if t.use in seen:
                raise ValueError(f"toolset {t.use!r} is listed twice in tools")
            seen.add(t.use)
        return self
