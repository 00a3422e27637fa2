"""The Toolset API: what a plugin implements to give the model tools.

A Toolset is opened once per run with its validated config. For each episode the engine creates an `Episode`
whose `binding` (patient, admission, prediction time) comes from the task and is frozen: tools read it, the model
never sets it. Tools are methods decorated with `@tool`; their type hints and docstring become the JSON schema:

    class Notes(Toolset):
        name = "notes"
        Config = NotesConfig

        @tool
        def notes_search(self, episode: Episode, keyword: str, limit: int = 5) -> str:
            '''Search this patient's notes written by the prediction time.

            Args:
                keyword: a literal word or phrase.
                limit: at most this many notes.
            '''
"""
from __future__ import annotations

import inspect
import re
import typing
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, ClassVar

from pydantic import BaseModel, ConfigDict, TypeAdapter

TOOL_NAME_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


class Endpoint(typing.NamedTuple):
    """A server a toolset sends requests to (see Toolset.remote_endpoints)."""

    url: str
    carries_patient_data: bool
    site_local: bool | None = None  # the toolset's own declaration (e.g. kb `site_local: true`), like a host's
    key: str = "url"                # where its config names it, inside `with:`, for messages


class ToolsetConfig(BaseModel):
    """Base for toolset configs: unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Binding:
    """What an episode is about. Set by the engine from the task; no tool argument can change it."""

    qid: str
    subject_id: int | str
    hadm_id: int | str | None
    prediction_time: datetime
    study_ids: tuple = ()

    def __post_init__(self):
        # The Task model makes prediction times naive (tasks.py); a binding made any other way must be too.
        if self.prediction_time.tzinfo is not None:
            raise ValueError("Binding.prediction_time must be naive (see Task.prediction_time)")

    @classmethod
    def from_task(cls, task: Any) -> "Binding":
        return cls(qid=task.qid, subject_id=task.subject_id, hadm_id=task.hadm_id,
                   prediction_time=task.prediction_time, study_ids=tuple(task.study_ids))


@dataclass
class Episode:
    """Per-episode context handed to every tool call. `state` is private to one toolset in one episode."""

    binding: Binding
    task: Any
    state: dict[str, Any] = field(default_factory=dict)
    run_index: int = 0


@dataclass
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    toolset: str = ""

    def schema(self) -> dict[str, Any]:
        """Provider-neutral schema: name, description, JSON-schema parameters."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


def tool(fn: Callable | None = None, *, name: str | None = None) -> Any:
    """Mark a Toolset method as a tool. Signature: (self, episode, **arguments)."""

    def mark(f: Callable) -> Callable:
        f.__clinseek_tool__ = name or f.__name__  # type: ignore[attr-defined]
        return f

    return mark(fn) if fn is not None else mark


class Toolset:
    """Base class for toolsets. Subclasses set `name`, `Config`, `description` and define `@tool` methods.

    `patient_data` says whether observations can carry patient data (governance refuses such toolsets with a host
    outside the site unless the recipe allows it).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type[BaseModel]] = ToolsetConfig
    patient_data: ClassVar[bool] = True
    # True for a toolset that offers another system's tool names unchanged (a model was trained on them): they
    # are then not required to start with `<toolset>_` (docs/plugins.md).
    foreign_tool_names: ClassVar[bool] = False

    def __init__(self, config: BaseModel, context: Any = None):
        self.config = config
        self.context = context

    # Lifecycle ---------------------------------------------------------------------------------------------
    def tool_schema(self, spec: "ToolSpec") -> dict[str, Any]:
        """The schema a model is shown for one of this toolset's tools. Override to narrow it once open (the ehr
        toolset lists the real table names), so models and constrained decoding see the actual choices."""
        return spec.schema()

    def open(self) -> None:
        """Open connections, sessions and clients; called once per run before any episode."""

    def close(self) -> None:
        """Release what open() took."""

    def bind(self, episode: Episode) -> None:
        """Prepare per-episode state (episode.state); called before the episode's first tool call."""

    def unbind(self, episode: Episode) -> None:
        """Drop per-episode state."""

    # Capabilities ------------------------------------------------------------------------------------------
    can_curate: ClassVar[bool] = False

    def curate(self, binding: Binding, window_hours: float = 24, max_events: int = 100) -> str:
        """The curated evidence package for `agent.evidence: curated`: what the patient's record holds in the
        `window_hours` before the binding's prediction time, as text, at most `max_events` events. A toolset that
        can build one sets `can_curate = True` and overrides this; the engine asks the first such toolset."""
        raise NotImplementedError(f"toolset {self.name!r} cannot curate evidence")

    def missing_patients(self, tasks: list[Any]) -> dict[str, str]:
        """The tasks (TaskViews) whose patient or admission this toolset's data does not have: qid -> why.

        Called once per run after open(), before the first episode, with every selected task, and by `clinseek
        validate`; the engine then skips or refuses them (the recipe's `tasks.missing_patient`). A toolset with
        no list of its patients returns {} (the default)."""
        return {}

    def manifest(self) -> dict[str, Any]:
        """Facts recorded in the run manifest (for example the ONNX providers really in use)."""
        return {}

    def preflight(self) -> list[tuple[str, str] | str]:
        """Cheap checks of what open() will need, run by `clinseek validate` without opening anything: files the
        config names exist, a server answers (with a short timeout). Nothing is built, loaded or downloaded.

        Return the problems found, each `(config key, message)` (the key dotted inside `with:`, e.g.
        `"database"`, so the message names the recipe line) or a plain message; `[]` when all is well.
        """
        return []

    def remote_endpoints(self) -> list["Endpoint | tuple[str, bool]"]:
        """The servers this toolset talks to, as its config names them: `Endpoint(url, carries_patient_data)`
        (a plain `(url, bool)` pair is read the same). Governance refuses an endpoint outside the site that
        receives patient-derived data (arguments the model writes from the patient's record count) unless the
        recipe opts in; say `carries_patient_data=False` only for what never sees an episode. Default: none."""
        return []

    # Tools -------------------------------------------------------------------------------------------------
    @classmethod
    def tool_specs(cls) -> list[ToolSpec]:
        specs = []
        for attr in dir(cls):
            fn = getattr(cls, attr, None)
            tname = getattr(fn, "__clinseek_tool__", None)
            if tname:
                specs.append(build_tool_spec(fn, tname, toolset=cls.name))
        return specs


# Schema from signature + docstring ------------------------------------------------------------------------

def _parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {arg: description})."""
    doc = inspect.cleandoc(doc or "")
    lines = doc.splitlines()
    desc_lines: list[str] = []
    args: dict[str, str] = {}
    i = 0
    while i < len(lines) and lines[i].strip() not in ("Args:", "Arguments:", "Parameters:"):
        desc_lines.append(lines[i])
        i += 1
    current = None
    for line in lines[i + 1:]:
        if line and not line.startswith(" ") and line.rstrip().endswith(":"):
            break  # next section (Returns:, ...)
        m = re.match(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.*)$", line)
        if m and (current is None or len(line) - len(line.lstrip()) <= 8):
            current = m.group(1)
            args[current] = m.group(2).strip()
        elif current and line.strip():
            args[current] += " " + line.strip()
    return "\n".join(desc_lines).strip(), args


def build_tool_spec(fn: Callable, name: str, toolset: str = "") -> ToolSpec:
    if not TOOL_NAME_RE.match(name):
        raise ValueError(f"tool name {name!r} must match {TOOL_NAME_RE.pattern}")
    sig = inspect.signature(fn)
    hints = typing.get_type_hints(fn)
    params = list(sig.parameters.values())[2:]  # drop self, episode
    description, arg_docs = _parse_docstring(fn.__doc__ or "")
    props: dict[str, Any] = {}
    required: list[str] = []
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        ann = hints.get(p.name, str)
        schema = TypeAdapter(ann).json_schema()
        schema.pop("title", None)
        # Optional[X] -> anyOf [X, null]; keep it simple for every provider: X, not required.
        if "anyOf" in schema:
            non_null = [s for s in schema["anyOf"] if s.get("type") != "null"]
            if len(non_null) == 1:
                schema = {**{k: v for k, v in schema.items() if k != "anyOf"}, **non_null[0]}
        if p.name in arg_docs:
            schema["description"] = arg_docs[p.name]
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
        elif p.default is not None:
            schema["default"] = p.default
        props[p.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        parameters["required"] = required
    return ToolSpec(name=name, description=description, parameters=parameters, fn=fn, toolset=toolset)


def validate_arguments(spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """Check arguments against the spec; raise ToolError with a message the model can act on."""
    from clinseek.errors import ToolError

    if not isinstance(arguments, dict):
        raise ToolError(f"arguments for {spec.name} must be a JSON object")
    props = spec.parameters.get("properties", {})
    unknown = sorted(set(arguments) - set(props))
    if unknown:
        raise ToolError(f"{spec.name} got unknown argument(s) {', '.join(unknown)}; it takes: "
                        f"{', '.join(props) or 'no arguments'}")
    missing = [r for r in spec.parameters.get("required", []) if r not in arguments]
    if missing:
        raise ToolError(f"{spec.name} is missing required argument(s): {', '.join(missing)}")
    hints = typing.get_type_hints(spec.fn)
    out = {}
    for key, value in arguments.items():
        ann = hints.get(key)
        if ann is None:
            out[key] = value
            continue
        try:
            out[key] = TypeAdapter(ann).validate_python(value, strict=False)
        except Exception as exc:  # pydantic ValidationError
            raise ToolError(f"{spec.name}: argument {key!r} is invalid: expected {props[key].get('type', ann)}, "
                            f"got {value!r}") from exc
    return out


def missing_path(value: str | None, context: Any = None, *, kind: str = "file") -> str | None:
    """For preflight(): why `value` (relative to the recipe's folder unless absolute) is not an existing file
    (kind="file") or folder (kind="folder"), or None when it is."""
    from pathlib import Path

    if value is None:
        return None
    text = str(value)
    if "\x00" in text:
        return f"{text!r} contains a NUL character"
    p = Path(text).expanduser()
    base = getattr(context, "recipe_dir", None)
    if not p.is_absolute() and base is not None:
        p = Path(base) / p
    if kind == "folder":
        return None if p.is_dir() else f"folder not found: {p}" if not p.exists() else f"not a folder: {p}"
    return None if p.is_file() else f"file not found: {p}" if not p.exists() else f"not a file: {p}"


def bound_text(text: str, limit: int) -> tuple[str, bool]:
    """Cut text to at most `limit` characters and say so, so the model knows it saw a part; returns (text, cut).
    The one truncation rule: the engine applies it to every observation, and toolsets may apply it earlier to
    their own output. The cut falls at a line end when one is near, so a table keeps whole rows."""
    if len(text) <= limit:
        return text, False
    note = f"\n[truncated: showing {{shown}} of {len(text)} characters; narrow the request to see the rest]"
    keep = max(0, limit - len(note) - 8)
    line_end = text.rfind("\n", 0, keep)
    if line_end > keep * 3 // 4:
        keep = line_end
    return text[:keep] + note.format(shown=keep), True

