"""The Task model (ClinSeek-Bench compatible fields) and the built-in task file source (JSONL or a JSON array)."""
from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from clinseek.errors import UserError


def label_names(value: Any) -> list[str]:
    """A label (or candidate list) as the plain strings that are scored, whatever shape a benchmark wrote it in.

    ClinSeek-Bench rows carry strings, lists of strings, or lists of objects: `{"name": ..., "value": ...}`
    (EHRXQA, MedMod) or `{"name": ..., "atc_name": ...}` (medications, scored by ATC name whenever any item of the
    list has one, as the reference scorer does). Numbers become their text ("2"). Read here once, so the task
    model, scoring and the reference importer agree.
    """
    if value is None:
        return []
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return [str(value)]
    items = [value] if isinstance(value, dict) else list(value)
    by_atc = any(isinstance(x, dict) and x.get("atc_name") for x in items)
    out = []
    for x in items:
        if isinstance(x, dict):
            v = x.get("atc_name") if by_atc else x.get("name", x.get("value"))
            if v is not None and not isinstance(v, (dict, list)):
                out.append(str(v))
        elif x is not None and not isinstance(x, (list, bool)):
            out.append(str(x))
    return out


_QID_IDS = re.compile(r"(?:_\d+){1,2}$")


def task_from_qid(qid: str) -> str | None:
    """The reference builds qids as <task>_<subject>[_<hadm>] (and sample rows as <name>_<n>): the task is what
    is left once the trailing numeric parts (at most two) are dropped; None when the qid has no such part."""
    m = _QID_IDS.search(qid)
    return qid[:m.start()] or None if m else None


def _id(v: Any) -> Any:
    # MIMIC and OMOP ids are integers; released files sometimes quote them ("10000032"), which would not match
    # an integer column.
    if isinstance(v, str) and v.strip().isdigit():
        return int(v.strip())
    return v


class Task(BaseModel):
    """One question about one patient at one prediction time.

    Field names follow ClinSeek-Bench rows (text and multimodal). `label` (and `label_raw`, the label exactly as
    the file wrote it, `value`s kept) is never shown to the model; `input` is the curated evidence package used
    by `agent.evidence: curated`. A row without `task` takes it from its qid, else from `task_family`
    (`task_from` says which). Unknown fields are kept in `extra`.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    qid: str
    subject_id: int | str
    hadm_id: int | str | None = None
    stay_id: int | str | None = None
    prediction_time: datetime
    task: str
    task_type: str = "unknown"
    task_family: str | None = None
    question: str
    candidates: list[str] = Field(default_factory=list)
    label: list[str] = Field(default_factory=list)
    label_raw: Any = None
    answer_type: str | None = None
    scope: str | None = None
    modalities: list[str] = Field(default_factory=list)
    study_ids: list[int | str] = Field(default_factory=list)
    dicom_ids: list[str] = Field(default_factory=list)
    image_paths: list[str] = Field(default_factory=list)
    report_paths: list[str] = Field(default_factory=list)
    snapshot_spec: dict[str, Any] | None = None
    source_benchmark: str | None = None
    source_split: str | None = None
    source_current_time: str | None = None
    input: str | None = None
    task_from: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _accept_bench_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            if "label" not in data and "ground_truth" in data:
                data["label"] = data.pop("ground_truth")
            if "label" in data and "label_raw" not in data:
                data["label_raw"] = data["label"]
            if not data.get("task"):
                qid_task = task_from_qid(str(data.get("qid", "")))
                if qid_task:
                    data["task"], data["task_from"] = qid_task, "qid"
                elif isinstance(data.get("task_family"), str) and data["task_family"]:
                    data["task"], data["task_from"] = data["task_family"], "task_family"
            for key in ("subject_id", "hadm_id", "stay_id"):
                if key in data:
                    data[key] = _id(data[key])
            known = set(cls.model_fields)
            extra = {k: v for k, v in data.items() if k not in known}
            if extra:
                data["extra"] = {**data.get("extra", {}), **extra}
        return data

    @field_validator("qid", mode="before")
    @classmethod
    def _qid_str(cls, v: Any) -> str:
        return str(v)

    @field_validator("source_current_time", mode="before")
    @classmethod
    def _time_text(cls, v: Any) -> Any:
        return None if v is None else str(v)

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

    @field_validator("label", "candidates", mode="before")
    @classmethod
    def _names(cls, v: Any) -> Any:
        return label_names(v)

    @field_validator("image_paths", "report_paths", "dicom_ids", "modalities", mode="before")
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
            return [_id(v)]
        return [_id(x) for x in v]

    def public_view(self) -> dict[str, Any]:
        """What prompts may show: everything except the label."""
        return self.view().model_dump(mode="json")

    def view(self) -> "TaskView":
        """What hosts and tools receive: the task without its label (or an answer kept among the extra fields)."""
        data = self.model_dump(exclude=LABEL_FIELDS)
        data["extra"] = {k: v for k, v in self.extra.items() if k.lower() not in ANSWER_KEYS}
        return TaskView(**data)


# Fields of a benchmark row that hold the answer, whatever a source calls them: never in a TaskView.
ANSWER_KEYS = frozenset({"label", "labels", "ground_truth", "output", "answer", "answers", "target"})
LABEL_FIELDS = frozenset({"label", "label_raw"})


class _TaskViewBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# A task as hosts, tools and prompts see it: every field of Task except the label, made from Task's own fields so
# the two cannot drift apart. It has no path back to the Task it was made from.
TaskView = create_model(
    "TaskView", __base__=_TaskViewBase, __module__=__name__,
    **{name: (f.annotation, f) for name, f in Task.model_fields.items() if name not in LABEL_FIELDS})


class TaskSource:
    """Base class for task sources. Subclasses set `name` and implement `iter_tasks`.

    `options` holds the recipe's `tasks` block (path already resolved against the recipe's folder, plus any
    source-specific keys under `with`). Raise UserError for a bad file, naming the file and line. A source that
    skips rows records them in `self.report` (a TaskFileReport), so a run that selects nothing can say why.
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
        self.report = TaskFileReport()

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


class TaskFileReport:
    """What one pass over a task file found: rows read, rows skipped (the first few reasons, with their place),
    rows whose task was inferred."""

    KEEP = 5

    def __init__(self) -> None:
        self.loaded = 0
        self.malformed = 0
        self.problems: list[str] = []
        self.inferred: dict[str, int] = {}

    def skipped(self, err: UserError) -> None:
        self.malformed += 1
        if len(self.problems) < self.KEEP:
            self.problems.append(err.render())

    def summary(self) -> str:
        """One line for the run's output: '12 tasks (3 malformed rows skipped)'."""
        text = f"{self.loaded} task{'s' * (self.loaded != 1)}"
        if self.malformed:
            text += f" ({self.malformed} malformed row{'s' * (self.malformed != 1)} skipped)"
        return text

    def as_dict(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "malformed": self.malformed, "first_problems": list(self.problems),
                "task_inferred_from": dict(self.inferred)}


class JsonlTaskSource(TaskSource):
    """Reads ClinSeek-Bench rows as released: JSON Lines, or one JSON array (or a {qid: row} object), told apart
    by the content, not the file's extension.

    `on_error: skip` (the default) reports the first malformed rows with their line numbers, counts the rest and
    goes on; `fail` stops at the first. A file that is not JSON at all (a broken array) always stops.
    """

    name = "jsonl"
    WARN_FIRST = 3

    def iter_tasks(self) -> Iterator[Task]:
        if self.path is None:
            raise UserError("the jsonl task source needs tasks.path", hint="set tasks.path to a .jsonl or .json file")
        if not self.path.exists():
            raise UserError(f"task file not found: {self.path}", hint="check tasks.path (relative to the recipe)")
        if self.path.is_dir():
            raise UserError(f"tasks.path is a folder: {self.path}", hint="name the .jsonl or .json file itself")
        on_error = self.options.get("on_error", "skip")
        warn = getattr(self.context, "warn", None) or _stderr_warn
        self.report = report = TaskFileReport()
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UserError(f"task file is not UTF-8 text: {self.path} (byte {exc.start})",
                            hint="task files are JSON Lines or a JSON array in UTF-8") from None
        for where, row in _json_rows(text, self.path):
            try:
                if isinstance(row, Exception):
                    raise row
                if not isinstance(row, dict):
                    raise ValueError(f"a task row is a JSON object, not {type(row).__name__}")
                task = Task.model_validate(row)
            except (json.JSONDecodeError, ValueError) as exc:
                err = MalformedTask(f"malformed task: {_short_error(exc)}", where=where,
                                    hint="fix the row, or set tasks.on_error: skip to skip such rows")
                if on_error == "fail":
                    raise err from None
                report.skipped(err)
                if report.malformed <= self.WARN_FIRST:
                    warn(err.render())
                continue
            if task.task_from:
                if not report.inferred:
                    warn(f"{self.path}: rows without `task`: it is taken from the "
                         f"{'qid' if task.task_from == 'qid' else 'task_family field'} (e.g. {task.qid} -> "
                         f"{task.task}); write `task` in the file to choose it")
                report.inferred[task.task_from] = report.inferred.get(task.task_from, 0) + 1
            report.loaded += 1
            yield task
        if report.malformed > self.WARN_FIRST:
            warn(f"{self.path}: {report.malformed - self.WARN_FIRST} more malformed row(s) skipped "
                 f"({report.malformed} in all)")


def _json_rows(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    """(where, row) for each row of a task file; a row that does not parse comes as its JSONDecodeError."""
    head = text.lstrip()[:1]
    if head == "[":
        yield from _array_rows(text, path)
        return
    if head == "{":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError:
            doc = None  # more than one object: JSON Lines
        if isinstance(doc, dict):
            if "qid" in doc or "question" in doc:
                yield f"{path}:1", doc
            else:  # {qid: row}, as some released files keep them
                for key, row in doc.items():
                    yield f"{path} (row {key!r})", row
            return
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield f"{path}:{lineno}", json.loads(line)
        except json.JSONDecodeError as exc:
            yield f"{path}:{lineno}", exc


def _array_rows(text: str, path: Path) -> Iterator[tuple[str, Any]]:
    """The items of a top-level JSON array one by one, each with the line it starts on (so a bad row is named
    by its line, as in a JSONL file). A syntax error breaks the whole array: that stops, naming the place."""
    decoder = json.JSONDecoder()
    pos, line, counted = text.index("[") + 1, 1, 0

    def line_at(i: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, i)
        counted = i
        return line

    def broken(msg: str, i: int) -> UserError:
        col = i - text.rfind("\n", 0, i)
        return UserError(f"task file is not valid JSON: {msg}", where=f"{path}:{line_at(i)}:{col}",
                         hint="a task file is JSON Lines (one object per line) or one JSON array of objects")

    n = len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos < n and text[pos] == "]":
            return
        try:
            row, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise broken(exc.msg, exc.pos) from None
        yield f"{path}:{line_at(pos)}", row
        pos = end
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos < n and text[pos] == ",":
            pos += 1
        elif pos < n and text[pos] == "]":
            return
        else:
            raise broken("expected ',' or ']' after a row", min(pos, n - 1))


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
