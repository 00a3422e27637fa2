"""Turn pydantic validation errors into `file:line:col: path: message` lines."""
from __future__ import annotations

import re
from typing import Any, Callable

from pydantic import BaseModel, ValidationError

from clinseek.recipe.suggest import did_you_mean


def dotted(path: tuple) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _fields_at(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """Names (aliases where set) accepted at `loc` inside `model`, for did-you-mean hints."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == part), None)
        if field is None:
            return []
        model = _model_of(field.annotation)
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items()]


def _model_of(annotation: Any) -> type[BaseModel] | None:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found:
            return found
    return None


def _describe(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "a mapping" if isinstance(value, dict) else "a list"
    return repr(value)


def format_validation_error(exc: ValidationError, *, prefix: tuple, where: Callable[[tuple], str | None],
                            model: type[BaseModel] | None = None,
                            skip: Callable[[tuple], bool] | None = None) -> list[str]:
    """One `file:line:col: path: message` line per error; `skip(path)` drops errors already reported."""
    lines = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if skip is not None and skip(prefix + loc):
            continue
        kind = err.get("type", "")
        value = err.get("input")
        if kind == "extra_forbidden":
            key = loc[-1] if loc else "?"
            known = _fields_at(model, loc[:-1])
            msg = f"unknown key {key!r}{did_you_mean(str(key), known)}"
            if known and not did_you_mean(str(key), known):
                msg += f"; allowed keys: {', '.join(known)}"
        elif kind == "missing":
            msg = f"required key {loc[-1]!r} is missing" if loc else "a required value is missing"
            loc = loc[:-1] + (loc[-1],) if loc else loc
        elif kind in ("int_parsing", "int_type", "int_from_float"):
            msg = f"expected an integer, got {_describe(value)}"
        elif kind in ("float_parsing", "float_type"):
            msg = f"expected a number, got {_describe(value)}"
        elif kind in ("bool_parsing", "bool_type"):
            msg = f"expected true or false, got {_describe(value)}"
        elif kind in ("string_type",):
            msg = f"expected a string, got {_describe(value)}"
        elif kind in ("list_type",):
            msg = f"expected a list, got {_describe(value)}"
        elif kind in ("dict_type", "model_type", "model_attributes_type"):
            msg = f"expected a mapping, got {_describe(value)}"
        elif kind == "literal_error":
            expected = (err.get("ctx") or {}).get("expected", "")
            msg = f"expected one of {expected}, got {_describe(value)}"
        else:
            text = err.get("msg", "invalid value")
            text = text.removeprefix("Value error, ")
            msg = text[0].lower() + text[1:] if text else "invalid value"
        full = prefix + loc
        lines.append((where(full) or "?", dotted(full), msg))
    lines.sort(key=lambda t: _position(t[0]))
    return [f"{w}: {path}: {msg}" for w, path, msg in lines]


def _position(where: str) -> tuple:
    parts = where.rsplit(":", 2)
    try:
        return (parts[0], int(parts[1]), int(parts[2]))
    except (IndexError, ValueError):
        return (where, 0, 0)


_POSITION = re.compile(r"^(?:error: )?(.+?):(\d+):(\d+): ")


def sort_problems(problems: list[str]) -> list[str]:
    """Problems in reading order: by file (in order of first appearance), line and column; those without a
    position (a --set override, a plugin conflict) keep their order, after the rest. Duplicates are dropped."""
    files: dict[str, int] = {}
    keyed = []
    for i, text in enumerate(dict.fromkeys(problems)):
        m = _POSITION.match(text)
        if m:
            order = files.setdefault(m.group(1), len(files))
            keyed.append(((0, order, int(m.group(2)), int(m.group(3)), i), text))
        else:
            keyed.append(((1, 0, 0, 0, i), text))
    return [text for _, text in sorted(keyed)]
