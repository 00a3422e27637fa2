"""YAML loading that remembers where every value came from (file, line, column) for error messages."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clinseek.errors import UserError

PathKey = tuple  # a path into the document: ("tools", 1, "with", "max_rows")


@dataclass(frozen=True)
class Mark:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


def load_yaml_with_marks(path: Path, display: str | None = None) -> tuple[Any, dict[PathKey, Mark]]:
    """Parse a YAML file; return (data, marks) where marks maps each value's path to its position."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    return parse_yaml_with_marks(text, name)


def parse_yaml_with_marks(text: str, name: str) -> tuple[Any, dict[PathKey, Mark]]:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise UserError(f"invalid YAML: {exc.problem or exc.context}", where=where,
                        hint="check indentation, quoting and colons near that position") from None
    marks: dict[PathKey, Mark] = {}
    if node is None:
        return {}, marks
    data = _construct(node, (), marks, name)
    return data, marks


def _construct(node: yaml.Node, path: PathKey, marks: dict[PathKey, Mark], name: str) -> Any:
    marks[path] = Mark(name, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in out:
                raise UserError(f"duplicate key {key!r}",
                                where=f"{name}:{key_node.start_mark.line + 1}:{key_node.start_mark.column + 1}",
                                hint="each key may appear once in a mapping")
            out[key] = _construct(value_node, path + (key,), marks, name)
            # Point at the key, where a reader looks for the setting, rather than at its value.
            marks[path + (key,)] = Mark(name, key_node.start_mark.line + 1, key_node.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(v, path + (i,), marks, name) for i, v in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(node, deep=True)
    finally:
        loader.dispose()
