"""Load a recipe: YAML with line marks -> extends (deep merge) -> --set overrides -> interpolation -> schema."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import ValidationError

from clinseek.errors import UserError, UserErrors
from clinseek.recipe.errors import format_validation_error
from clinseek.recipe.interpolate import interpolate, redact
from clinseek.recipe.schema import Recipe
from clinseek.recipe.yamlmarks import Mark, load_yaml_with_marks

MAX_EXTENDS_DEPTH = 8


@dataclass
class LoadedRecipe:
    recipe: Recipe
    path: Path
    data: dict[str, Any]  # after merge, overrides and interpolation
    marks: dict[tuple, Mark]
    site: dict[str, Any] | None = None
    secrets: set[str] = field(default_factory=set)

    @property
    def dir(self) -> Path:
        return self.path.parent

    def where(self, path: tuple) -> str | None:
        """The position of the value at `path` (or of its nearest ancestor that has one)."""
        p = tuple(path)
        while True:
            if p in self.marks:
                return str(self.marks[p])
            if not p:
                return str(self.path)
            p = p[:-1]

    def redacted(self) -> dict[str, Any]:
        return redact(self.data, self.secrets)

    @property
    def sha256(self) -> str:
        """Hash of the resolved recipe with secrets redacted: equal for equal behaviour, safe to publish."""
        blob = json.dumps(self.redacted(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def resolve_path(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.dir / p)


def load_site(path: str | Path | None) -> dict[str, Any] | None:
    if path is None:
        return None
    p = Path(path)
    data, _ = load_yaml_with_marks(p)
    if not isinstance(data, dict):
        raise UserError("a site file must be a mapping of keys to values", where=str(p))
    return data


def _deep_merge(base: Any, over: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced by the child's value."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _deep_merge(base[k], v) if k in base else v
        return out
    return over


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _load_chain(path: Path, seen: tuple[Path, ...] = ()) -> tuple[dict, dict[tuple, Mark]]:
    real = path.resolve()
    if real in seen:
        chain = " -> ".join(_display(p) for p in seen + (real,))
        raise UserError(f"`extends` forms a cycle: {chain}", hint="remove one of the extends links")
    if len(seen) >= MAX_EXTENDS_DEPTH:
        raise UserError(f"`extends` is nested more than {MAX_EXTENDS_DEPTH} deep", where=_display(path))
    data, marks = load_yaml_with_marks(path, _display(path))
    if not isinstance(data, dict):
        raise UserError("a recipe must be a YAML mapping (key: value lines)", where=_display(path))
    parent = data.get("extends")
    if parent is None:
        return data, marks
    if not isinstance(parent, str):
        raise UserError("`extends` must be a relative path to another recipe", where=str(marks[("extends",)]))
    parent_path = (path.parent / parent)
    if not parent_path.exists():
        raise UserError(f"`extends` names {parent!r}, which does not exist (looked at {_display(parent_path)})",
                        where=str(marks[("extends",)]), hint="paths in extends are relative to this recipe")
    base, base_marks = _load_chain(parent_path, seen + (real,))
    merged = _deep_merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged_marks = {**base_marks, **marks}
    return merged, merged_marks


def _parse_override(item: str) -> tuple[list[Any], Any]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set agent.max_turns=10")
    key, raw = item.split("=", 1)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in key.strip().split(".") if p]
    if not parts:
        raise UserError(f"--set {item!r}: the key is empty")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict, marks: dict[tuple, Mark], overrides: Iterable[str]) -> None:
    for item in overrides:
        parts, value = _parse_override(item)
        cur: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(cur, list):
                if not isinstance(part, int) or part >= len(cur):
                    raise UserError(f"--set {item}: index {part} is out of range")
                cur = cur[part]
                continue
            if part not in cur or not isinstance(cur[part], (dict, list)):
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
        last = parts[-1]
        if isinstance(cur, list):
            if not isinstance(last, int) or last >= len(cur):
                raise UserError(f"--set {item}: index {last} is out of range")
        cur[last] = value
        marks[tuple(parts)] = Mark(f"--set {'.'.join(map(str, parts))}", 0, 0)


def load_recipe(path: str | Path, site: str | Path | dict | None = None,
                overrides: Iterable[str] = ()) -> LoadedRecipe:
    """Load, merge, override, interpolate and validate a recipe. Raises UserErrors listing every problem."""
    p = Path(path)
    if not p.exists():
        raise UserError(f"recipe not found: {p}", hint="give the path to a recipe YAML file")
    site_data = site if isinstance(site, dict) or site is None else load_site(site)
    data, marks = _load_chain(p)
    apply_overrides(data, marks, overrides)
    secrets: set[str] = set()

    def where(path_: tuple) -> str | None:
        q = tuple(path_)
        while q and q not in marks:
            q = q[:-1]
        return str(marks[q]) if q in marks else _display(p)

    data, problems = interpolate(data, site_data, where, secrets)
    if problems:
        raise UserErrors(problems)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, prefix=(), where=where, model=Recipe)
        raise UserErrors([redact_line(line, secrets) for line in lines]) from None
    return LoadedRecipe(recipe=recipe, path=p, data=data, marks=marks, site=site_data, secrets=secrets)


def redact_line(line: str, secrets: set[str]) -> str:
    for s in secrets:
        if s and len(s) >= 3:
            line = line.replace(s, "***")
    return line
