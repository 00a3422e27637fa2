"""YAML loading that remembers where every value came from (file, line, column) for error messages.

Recipes and site files are shared between sites, so a file is bounded before anything trusts it: its size, its
nesting depth, its aliases (count and how much they expand: a "billion laughs" file must fail at once) and its
tags (plain YAML types only; `!!python/...` and other tags are refused, since recipes are data, not code).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from clinseek.errors import UserError

PathKey = tuple  # a path into the document: ("tools", 1, "with", "max_rows")

MAX_FILE_BYTES = 2 * 1024 * 1024   # recipes and site files are hand-written; this is generous
MAX_DEPTH = 64                     # nested mappings and lists
MAX_ALIASES = 100                  # `*name` references in one document
MAX_ALIAS_EXPANSION = 100_000      # values produced by following aliases, beyond the document's own
MAX_EXPANDED_CHARS = 16 * 1024 * 1024

_CORE = "tag:yaml.org,2002:"
ALLOWED_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp", "merge")}
ALLOWED_TAGS.add("!")  # the non-specific tag: `! 123` is the string "123"
MERGE_TAG = _CORE + "merge"


class YamlSyntaxError(UserError):
    """The text is not YAML at all (as opposed to YAML this loader refuses)."""


@dataclass(frozen=True)
class Mark:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        # line 0: a position with no line, e.g. a `--set KEY=VALUE` override, named by itself.
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file


def load_yaml_with_marks(path: Path, display: str | None = None) -> tuple[Any, dict[PathKey, Mark]]:
    """Parse a YAML file; return (data, marks) where marks maps each value's path to its position."""
    name = display or str(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)  # never more, whatever the file is (a FIFO, /dev/zero)
    except FileNotFoundError:
        raise UserError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a YAML file") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; recipes and site files "
                        f"are small hand-written YAML", where=name,
                        hint="keep task lists and other data in their own files (tasks.path)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise UserError("the file is not UTF-8 text", where=f"{name}:{line}:{col}",
                        hint="save it as UTF-8") from None
    return parse_yaml_with_marks(text, name)


def parse_yaml_with_marks(text: str, name: str) -> tuple[Any, dict[PathKey, Mark]]:
    nul = text.find("\x00")
    if nul >= 0:
        raise UserError("the file contains a NUL byte (is it a binary file?)", where=_where(name, text, nul),
                        hint="a recipe is plain YAML text")
    try:
        _check_events(text, name)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        raise YamlSyntaxError(f"invalid YAML: {exc.problem or exc.context}", where=where,
                              hint="check indentation, quoting and colons near that position") from None
    except yaml.reader.ReaderError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc.reason} (character {exc.character!r})",
                              where=_where(name, text, exc.position)) from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(f"invalid YAML: {exc}", where=name) from None
    if node is None:
        return {}, {}
    builder = _Builder(name)
    return builder.build(node, (), 0), builder.marks


def _where(name: str, text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    return f"{name}:{line}:{index - (text.rfind(chr(10), 0, index) + 1) + 1}"


def _at(name: str, mark: Any) -> str:
    return f"{name}:{mark.line + 1}:{mark.column + 1}"


def _check_events(text: str, name: str) -> None:
    """Depth, alias count and tags, from the parser's events: it is iterative, so a 10,000-deep file is refused
    here instead of overflowing the (recursive) composer."""
    depth = aliases = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(ev, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"mappings and lists are nested more than {MAX_DEPTH} deep",
                                where=_at(name, ev.start_mark), hint="a recipe is a few levels deep")
        elif isinstance(ev, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
        elif isinstance(ev, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise UserError(f"more than {MAX_ALIASES} YAML aliases (*name) in one file",
                                where=_at(name, ev.start_mark),
                                hint="write the values out, or share them through `extends:`")
        tag = getattr(ev, "tag", None)
        if tag and tag not in ALLOWED_TAGS:
            shown = tag.replace(_CORE, "!!")
            if "python/" in tag:
                raise UserError(f"the YAML tag {shown!r} is refused: recipes are data and never name Python "
                                f"objects", where=_at(name, ev.start_mark), hint="remove the tag")
            raise UserError(f"unsupported YAML tag {shown!r}", where=_at(name, ev.start_mark),
                            hint="use plain strings, numbers, booleans, lists and mappings")


class _Builder:
    """Turns a node graph into plain data and marks, counting what aliases expand to."""

    def __init__(self, name: str):
        self.name = name
        self.marks: dict[PathKey, Mark] = {}
        self.seen: set[int] = set()
        self.repeats = 0
        self.chars = 0
        self.loader = yaml.SafeLoader("")  # one constructor for every scalar (it caches aliased ones)

    def mark(self, node: yaml.Node) -> Mark:
        return Mark(self.name, node.start_mark.line + 1, node.start_mark.column + 1)

    def build(self, node: yaml.Node, path: PathKey, depth: int) -> Any:
        if id(node) in self.seen:
            self.repeats += 1
            if self.repeats > MAX_ALIAS_EXPANSION:
                top = self.marks.get(path[:1], self.mark(node))  # the top-level value that expands
                under = f" under {path[0]!r}" if path else ""
                raise UserError(f"YAML aliases expand to more than {MAX_ALIAS_EXPANSION:,} values{under} "
                                f"(a 'billion laughs' document?)", where=str(top),
                                hint="write the values out, or share them through `extends:`")
        self.seen.add(id(node))
        if depth > MAX_DEPTH:  # only reachable through an alias that contains itself
            raise UserError(f"mappings and lists are nested more than {MAX_DEPTH} deep (an alias that refers "
                            f"to itself?)", where=str(self.mark(node)))
        self.marks[path] = self.mark(node)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(v, path + (i,), depth + 1) for i, v in enumerate(node.value)]
        value = self.scalar(node)
        if isinstance(value, str):
            self.chars += len(value)
            if self.chars > MAX_EXPANDED_CHARS:
                raise UserError(f"the document's strings add up to more than {MAX_EXPANDED_CHARS // 2**20} MiB "
                                f"(after expanding aliases)", where=str(self.mark(node)))
        return value

    def _mapping(self, node: yaml.MappingNode, path: PathKey, depth: int) -> dict:
        out: dict[Any, Any] = {}
        pairs = [(k, v) for k, v in node.value if k.tag != MERGE_TAG]
        # `<<: *base` (YAML merge keys) first: the mapping's own keys then override what was merged.
        for value_node in (v for k, v in node.value if k.tag == MERGE_TAG):
            sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
            for src in sources:
                if not isinstance(src, yaml.MappingNode):
                    raise UserError("`<<` merges mappings only", where=str(self.mark(src)))
                for k, v in self.build(src, path, depth + 1).items():
                    out.setdefault(k, v)  # of several merged mappings, the first listed wins
            self.marks[path] = self.mark(node)
        explicit: set[Any] = set()
        for key_node, value_node in pairs:
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError("a mapping key must be a plain name, not a list or a mapping",
                                where=str(self.mark(key_node)), hint="quote it if it is meant as text")
            key = self.scalar(key_node)
            if key in explicit:
                raise UserError(f"duplicate key {key!r}", where=str(self.mark(key_node)),
                                hint="each key may appear once in a mapping")
            explicit.add(key)
            out[key] = self.build(value_node, path + (key,), depth + 1)
            # Point at the key, where a reader looks for the setting, rather than at its value.
            self.marks[path + (key,)] = self.mark(key_node)
        return out

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            raise UserError(f"invalid value: {exc.problem or exc.context}", where=str(self.mark(node))) from None
