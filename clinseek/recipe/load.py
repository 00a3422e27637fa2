"""Load a recipe: YAML with line marks -> extends (deep merge) -> --set overrides -> interpolation -> schema."""
from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from pydantic import ValidationError

from clinseek.errors import UserError, UserErrors
from clinseek.recipe.errors import format_validation_error, sort_problems
from clinseek.recipe.interpolate import interpolate, redact
from clinseek.redact import SECRET_KEY
from clinseek.recipe.schema import Recipe
from clinseek.recipe.yamlmarks import Mark, YamlSyntaxError, load_yaml_with_marks, parse_yaml_with_marks

MAX_EXTENDS_DEPTH = 8
# Stands in for a required value that is missing or invalid, so the rest of the recipe can still be checked.
PLACEHOLDER = "\x00clinseek-invalid"


@dataclass
class LoadedRecipe:
    recipe: Recipe | None  # None only when loaded with collect=True and the recipe could not be read at all
    path: Path
    data: dict[str, Any]  # after merge, overrides and interpolation
    marks: dict[tuple, Mark]
    site: dict[str, Any] | None = None
    secrets: set[str] = field(default_factory=set)
    # With collect=True: every problem found, and the recipe paths they are about (assemble skips those parts).
    problems: list[str] = field(default_factory=list)
    problem_paths: set[tuple] = field(default_factory=set)
    source_sha256: str = ""  # the recipe after extends, before --set and interpolation (see provenance())
    site_path: Path | None = None
    site_sha256: str | None = None
    overrides: list[tuple[str, Any]] = field(default_factory=list)  # (dotted key, value as given)

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

    def has_problem(self, path: tuple) -> bool:
        """Whether a problem was found at `path`, inside it, or at one of its ancestors."""
        n = len(path)
        return any(q[:n] == path or path[:len(q)] == q for q in self.problem_paths)

    def redacted(self) -> dict[str, Any]:
        return redact(self.data, self.secrets)

    @property
    def sha256(self) -> str:
        """Hash of the resolved recipe with secrets redacted: equal for equal behaviour, safe to publish."""
        blob = json.dumps(self.redacted(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()

    def provenance(self) -> dict[str, Any]:
        """What a run manifest records about where the recipe came from: the shared recipe's own hash (equal at
        every site that ran it unchanged), the site file by path and hash (never its values), and each --set
        override (values under secret-looking keys, or holding a secret, redacted)."""
        overrides = []
        for key, value in self.overrides:
            secret = bool(SECRET_KEY.search(key.rsplit(".", 1)[-1]))
            overrides.append({"key": key, "value": "***" if secret else redact(value, self.secrets)})
        site = None
        if self.site_path is not None:
            site = {"path": str(self.site_path), "sha256": self.site_sha256}
        return {"recipe_source_sha256": self.source_sha256, "site": site, "overrides": overrides}

    def resolve_path(self, value: str | Path) -> Path:
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.dir / p)


def canonical_sha256(data: Any) -> str:
    """sha256 of a canonical JSON form: key order, spacing and YAML layout do not change it."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


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
    if not isinstance(parent, str) or not parent.strip():
        raise UserError("`extends` must be a relative path to another recipe", where=str(marks[("extends",)]))
    if "\x00" in parent:
        raise UserError("`extends` contains a NUL character, which no file name can hold",
                        where=str(marks[("extends",)]), hint="write the path of another recipe file")
    parent_path = (path.parent / parent)
    if not parent_path.exists():
        raise UserError(f"`extends` names {parent!r}, which does not exist (looked at {_display(parent_path)})",
                        where=str(marks[("extends",)]), hint="paths in extends are relative to this recipe")
    base, base_marks = _load_chain(parent_path, seen + (real,))
    merged = _deep_merge(base, {k: v for k, v in data.items() if k != "extends"})
    merged_marks = {**base_marks, **marks}
    return merged, merged_marks


def _override_label(key: str, raw: str) -> str:
    """How an override is named in messages: `--set host.model=gpt-4o` (secret-looking keys: `=***`)."""
    shown = "***" if SECRET_KEY.search(key.rsplit(".", 1)[-1]) else raw.strip()
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return f"--set {key}={shown}"


def _parse_override(item: str) -> tuple[list[Any], Any, str]:
    if "=" not in item:
        raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set agent.max_turns=10")
    key, raw = item.split("=", 1)
    parts: list[Any] = [int(p) if p.isdigit() else p for p in key.strip().split(".") if p]
    if not parts:
        raise UserError(f"--set {item!r}: the key is empty")
    label = _override_label(".".join(map(str, parts)), raw)
    try:
        value = parse_yaml_with_marks(raw, label)[0] if raw.strip() else ""
    except YamlSyntaxError:
        value = raw  # not YAML: the text itself
    except UserError as exc:  # YAML this loader refuses (tags, aliases, depth)
        raise UserError(exc.message, where=label, hint=exc.hint) from None
    return parts, value, label


def apply_overrides(data: dict, marks: dict[tuple, Mark], overrides: Iterable[str]) -> list[tuple[str, Any]]:
    """Apply `--set KEY=VALUE` items in order; return (key, value) of each, for the manifest."""
    applied = []
    for item in overrides:
        parts, value, label = _parse_override(item)
        cur: Any = data
        for i, part in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(cur, list):
                if not isinstance(part, int) or part >= len(cur):
                    raise UserError(f"index {part} is out of range (the list has {len(cur)} items)", where=label)
                cur = cur[part]
                continue
            if not isinstance(cur, dict):
                raise UserError(f"{'.'.join(map(str, parts[:i]))} is not a mapping or a list", where=label)
            if part not in cur or not isinstance(cur[part], (dict, list)):
                cur[part] = [] if isinstance(nxt, int) else {}
            cur = cur[part]
        last = parts[-1]
        if isinstance(cur, list):
            if not isinstance(last, int) or last >= len(cur):
                raise UserError(f"index {last} is out of range (the list has {len(cur)} items)", where=label)
        elif not isinstance(cur, dict):
            raise UserError(f"{'.'.join(map(str, parts[:-1]))} is not a mapping or a list", where=label)
        cur[last] = copy.deepcopy(value)
        # The override replaced whatever the file had there: its positions now name the override.
        path = tuple(parts)
        for q in [q for q in marks if q[:len(path)] == path]:
            del marks[q]
        for q in _paths(value, path):
            marks[q] = Mark(label, 0, 0)
        applied.append((".".join(map(str, parts)), value))
    return applied


def _scalars(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [s for v in value.values() for s in _scalars(v)]
    if isinstance(value, list):
        return [s for v in value for s in _scalars(v)]
    return [] if value is None or isinstance(value, bool) else [str(value)]


def _paths(value: Any, prefix: tuple) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, prefix + (i,))
    return out


def load_recipe(path: str | Path, site: str | Path | dict | None = None,
                overrides: Iterable[str] = (), *, collect: bool = False) -> LoadedRecipe:
    """Load, merge, override, interpolate and validate a recipe.

    Raises UserErrors listing every problem; with collect=True returns them in `.problems` instead, together with
    a best-effort recipe built from the rest (or `recipe=None`), so `assemble` can check the other parts too.
    A file that cannot be read as YAML still raises at once.
    """
    p = Path(path)
    if not p.exists():
        raise UserError(f"recipe not found: {p}", hint="give the path to a recipe YAML file")
    site_path = None if isinstance(site, dict) or site is None else Path(site)
    site_data = site if isinstance(site, dict) or site is None else load_site(site)
    data, marks = _load_chain(p)
    source_sha = canonical_sha256(redact(data, set()))
    applied = apply_overrides(data, marks, overrides)
    secrets: set[str] = set(_scalars((site_data or {}).get("secrets")))  # secret even where not referenced

    def where(path_: tuple) -> str | None:
        q = tuple(path_)
        while q and q not in marks:
            q = q[:-1]
        return str(marks[q]) if q in marks else _display(p)

    failed: set[tuple] = set()
    data, problems = interpolate(data, site_data, where, secrets, failed=failed)
    problem_paths = set(failed)
    # Values whose reference failed are dropped before the schema sees them (it would only repeat the problem).
    checked = copy.deepcopy(data)
    for q in sorted(failed, key=_path_order, reverse=True):  # later list items first: indices stay valid
        _fix(checked, q, False)
    recipe = None
    try:
        recipe = Recipe.model_validate(checked)
    except ValidationError as exc:
        problems += format_validation_error(exc, prefix=(), where=where, model=Recipe)
        problem_paths |= {tuple(e.get("loc", ())) for e in exc.errors()}
        recipe = _best_effort(checked, exc)
    problems = sort_problems([redact_line(line, secrets) for line in problems])
    if problems and not collect:
        raise UserErrors(problems)
    loaded = LoadedRecipe(recipe=recipe, path=p, data=checked if problems else data, marks=marks,
                          site=site_data, secrets=secrets, problems=problems, problem_paths=problem_paths,
                          source_sha256=source_sha, overrides=applied)
    if site_path is not None:
        loaded.site_path = site_path.resolve()
        loaded.site_sha256 = hashlib.sha256(site_path.read_bytes()).hexdigest()
    return loaded


def _path_order(path: tuple) -> list:
    return [(x, "") if isinstance(x, int) else (-1, str(x)) for x in path]


def _required(path: tuple) -> bool:
    return path in (("clinseek",), ("name",), ("host",), ("host", "provider")) or (
        len(path) == 3 and path[0] == "tools" and path[2] == "use")


def _placeholder(path: tuple) -> Any:
    return 1 if path == ("clinseek",) else {"provider": PLACEHOLDER} if path == ("host",) else PLACEHOLDER


def _fix(data: Any, loc: tuple, missing: bool) -> bool:
    """Drop the value at `loc` so its default applies, or put a placeholder where a required value is missing or
    invalid. Returns False when nothing changed (the problem cannot be worked around)."""
    holder, depth = data, 0
    for part in loc[:-1]:  # pydantic may add union member names that are not data keys: stop where data ends
        if isinstance(holder, dict) and part in holder or (
                isinstance(holder, list) and isinstance(part, int) and 0 <= part < len(holder)):
            holder, depth = holder[part], depth + 1
        else:
            break
    if depth < len(loc) - 1:  # loc goes beyond the data: drop the deepest value it reaches
        return _fix(data, loc[:depth + 1], False) if depth + 1 < len(loc) else False
    key = loc[-1]
    if missing or _required(loc):
        if not isinstance(holder, dict) or holder.get(key) == _placeholder(loc):
            return False
        holder[key] = _placeholder(loc)
        return True
    if isinstance(holder, dict) and key in holder:
        holder.pop(key)
        return True
    if isinstance(holder, list) and isinstance(key, int) and 0 <= key < len(holder):
        if len(loc) == 2 and loc[0] == "tools":
            holder[key] = {"use": PLACEHOLDER}  # keeps the other tools' indices (and positions) right
        else:
            holder.pop(key)
        return True
    return False


def _best_effort(data: dict, exc: ValidationError) -> Recipe | None:
    """The recipe with every invalid value dropped (defaults apply) or replaced by PLACEHOLDER; None when that
    does not give a valid recipe within a few rounds (e.g. a problem of the recipe as a whole)."""
    for _ in range(6):
        changed = False
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            if not loc:
                return None
            changed |= _fix(data, loc, err.get("type") == "missing")
        if not changed:
            return None
        try:
            return Recipe.model_validate(data)
        except ValidationError as again:
            exc = again
    return None


def redact_line(line: str, secrets: set[str]) -> str:
    for s in secrets:
        if s and len(s) >= 3:
            line = line.replace(s, "***")
    return line
