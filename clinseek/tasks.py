"""The Task model (ClinSeek-Bench compatible fields) and the built-in jsonl task source."""
from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from clinseek.errors import UserError


class Task(BaseModel):
    """One question about one patient at one prediction time.

    Field names follow ClinSeek-Bench rows. `label` is never shown to the model; `input` is the curated evidence
    package used by `agent.evidence: curated`. Unknown fields are kept in `extra`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    qid: str
    subject_id: int | str
    hadm_id: int | str | None = None
    prediction_time: datetime
    task: str
    task_type: str = "unknown"
    question: str
    candidates: list[str] = Field(default_factory=list)
    label: list[str] = Field(default_factory=list)
    study_ids: list[int | str] = Field(default_factory=list)
    image_paths: list[str] = Field(default_factory=list)
    input: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _accept_bench_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "label" not in data and "ground_truth" in data:
                data["label"] = data.pop("ground_truth")
            known = set(cls.model_fields)
            extra = {k: v for k, v in data.items() if k not in known}
            if extra:
                data["extra"] = {**data.get("extra", {}), **extra}
        return data

    @field_validator("qid", mode="before")
    @classmethod
    def _qid_str(cls, v: Any) -> str:
        return str(v)

    @field_validator("prediction_time", mode="after")
    @classmethod
    def _naive_time(cls, v: datetime) -> datetime:
        # MIMIC and OMOP times are naive wall-clock times. One rule, applied here once so every toolset, prompt
        # and audit reads the same value: a zero offset (Z, +00:00) is dropped, any other offset is refused,
        # because converting it would move the cutoff by hours in one direction or the other.
        if v.tzinfo is None:
            return v
        offset = v.utcoffset()
        if offset is not None and offset.total_seconds() == 0:
            return v.replace(tzinfo=None)
        raise ValueError(f"prediction_time {v.isoformat()} has a time-zone offset; EHR times are naive local "
                         "times: write the time without an offset (as it appears in the database)")

    @field_validator("label", "candidates", "image_paths", mode="before")
    @classmethod
    def _as_list(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, (str, int, float)):
            return [str(v)]
        return [str(x) for x in v]

    @field_validator("study_ids", mode="before")
    @classmethod
    def _ids_list(cls, v: Any) -> Any:
        if v is None:
            return []
        if isinstance(v, (str, int)):
            return [v]
        return list(v)

    def public_view(self) -> dict[str, Any]:
        """What prompts may show: everything except the label."""
        return self.view().model_dump(mode="json")

    def view(self) -> "TaskView":
        """What hosts and tools receive: the task without its label (or an answer kept among the extra fields)."""
        data = self.model_dump(exclude={"label"})
        data["extra"] = {k: v for k, v in self.extra.items() if k.lower() not in ANSWER_KEYS}
        return TaskView(**data)


# Fields of a benchmark row that hold the answer, whatever a source calls them: never in a TaskView.
ANSWER_KEYS = frozenset({"label", "labels", "ground_truth", "output", "answer", "answers", "target"})


class _TaskViewBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# A task as hosts, tools and prompts see it: every field of Task except `label`, made from Task's own fields so
# the two cannot drift apart. It has no path back to the Task it was made from.
TaskView = create_model(
    "TaskView", __base__=_TaskViewBase, __module__=__name__,
    **{name: (f.annotation, f) for name, f in Task.model_fields.items() if name != "label"})


class TaskSource:
    """Base class for task sources. Subclasses set `name` and implement `iter_tasks`.

    `options` holds the recipe's `tasks` block (path already resolved against the recipe's folder, plus any
    source-specific keys under `with`). Raise UserError for a bad file, naming the file and line.
    """

    name: str = ""
    Config: Any = None   # TaskSourceConfig (set below); a source may subclass it to type its own options

    def __init__(self, config: "TaskSourceConfig | dict[str, Any] | None" = None, context: Any = None):
        from pydantic import ValidationError

        cls = type(self).Config or TaskSourceConfig
        try:
            self.config = config if isinstance(config, BaseModel) else cls.model_validate(config or {})
        except ValidationError as exc:
            raise UserError(f"task source {self.name!r}: {_short_error(exc)}", where="tasks",
                            hint="check the recipe's tasks block") from None
        self.context = context
        self.path: Path | None = self.config.path
        # The source's own options (the recipe's `tasks.with`) and on_error, as a plain mapping.
        self.options: dict[str, Any] = {**(self.config.model_extra or {}), "on_error": self.config.on_error}

    def iter_tasks(self) -> Iterator[Task]:  # pragma: no cover - interface
        raise NotImplementedError


class TaskSourceConfig(BaseModel):
    """What every task source gets: `path` (resolved against the recipe's folder), `on_error`, and the recipe's
    `tasks.with` options as extra fields."""

    model_config = ConfigDict(extra="allow")

    path: Path | None = None
    on_error: str = "skip"


TaskSource.Config = TaskSourceConfig


class MalformedTask(UserError):
    pass


class JsonlTaskSource(TaskSource):
    """Reads ClinSeek-Bench rows, one JSON object per line.

    `on_error: skip` (the default) reports a malformed line with its number and goes on; `fail` stops the run.
    """

    name = "jsonl"

    def iter_tasks(self) -> Iterator[Task]:
        if self.path is None:
            raise UserError("the jsonl task source needs tasks.path", hint="set tasks.path to a .jsonl file")
        if not self.path.exists():
            raise UserError(f"task file not found: {self.path}", hint="check tasks.path (relative to the recipe)")
        on_error = self.options.get("on_error", "skip")
        with self.path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    yield Task.model_validate(json.loads(line))
                except (json.JSONDecodeError, ValueError) as exc:
                    msg = _short_error(exc)
                    err = MalformedTask(f"malformed task: {msg}", where=f"{self.path}:{lineno}",
                                        hint="fix the line, or set tasks.on_error: skip to skip such lines")
                    if on_error == "fail":
                        raise err from None
                    report = getattr(self.context, "warn", None)
                    (report or _stderr_warn)(err.render())


def _short_error(exc: Exception) -> str:
    if hasattr(exc, "errors"):
        try:
            parts = []
            for e in exc.errors():  # pydantic
                loc = ".".join(str(p) for p in e.get("loc", ()))
                parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
            return "; ".join(parts)
        except Exception:  # noqa: BLE001 - fall back to the plain text
            pass
    return str(exc).splitlines()[0]


def _stderr_warn(text: str) -> None:
    import sys

    print(f"warning: {text}", file=sys.stderr)
