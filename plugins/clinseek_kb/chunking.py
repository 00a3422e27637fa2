"""Split documents into passages: by headings first, then by size at paragraph or sentence boundaries.

Markdown, plain text, HTML and JSONL are read; every chunk carries source, title, section and the ICD-10-CM codes
found in it. Chunk ids are stable (source + position), so re-ingesting a file replaces its chunks.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, Iterator

from clinseek.errors import UserError
from clinseek_kb.codes import codes_in

CHUNKER_VERSION = "kb-chunk-v1"
DEFAULT_MAX_CHARS = 1200
SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text", ".html": "html",
            ".htm": "html", ".jsonl": "jsonl"}

_HEADING_RE = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_CITATION_RE = re.compile(r"^Sources?:\s*(.+?)(?:\n\s*\n|\Z)", re.M | re.S)


@dataclass
class Chunk:
    source: str
    title: str
    section: str
    text: str
    position: int = 0
    codes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        return {"source": self.source, "title": self.title, "section": self.section, "text": self.text,
                "position": self.position, "codes": self.codes, **self.extra}


def split_by_size(text: str, max_chars: int) -> list[str]:
    """Pack paragraphs (then sentences, then hard cuts) into pieces of at most max_chars."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    units: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if len(para) <= max_chars:
            units.append(para)
            continue
        for sentence in re.split(r"(?<=[.!?;])\s+", para):
            while len(sentence) > max_chars:  # a sentence longer than a chunk: cut at a space
                cut = sentence.rfind(" ", 0, max_chars)
                cut = cut if cut > max_chars // 2 else max_chars
                units.append(sentence[:cut])
                sentence = sentence[cut:].strip()
            if sentence:
                units.append(sentence)
    pieces: list[str] = []
    current = ""
    for unit in units:
        if current and len(current) + 2 + len(unit) > max_chars:
            pieces.append(current)
            current = unit
        else:
            current = f"{current}\n\n{unit}" if current else unit
    if current:
        pieces.append(current)
    return pieces


def sections_of_markdown(text: str, default_title: str) -> tuple[str, list[tuple[str, str]]]:
    """(title, [(section path, body)]) where the title is the first level-1 heading."""
    title = default_title
    stack: list[tuple[int, str]] = []
    sections: list[tuple[str, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        content = "\n".join(body).strip()
        if content:
            path = " > ".join(h for lvl, h in stack if not (lvl == 1 and h == title)) or title
            sections.append((path, content))
        body.clear()

    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else _HEADING_RE.match(line)
        if m:
            flush()
            level, heading = len(m.group(1)), m.group(2).strip()
            if level == 1 and title == default_title and not sections and not stack:
                title = heading
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        else:
            body.append(line)
    flush()
    return title, sections


class _HtmlToMarkdown(HTMLParser):
    """Keep headings (as Markdown) and text; drop scripts, styles and markup."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._skip = 0
        self._title: list[str] | None = None
        self.title = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self._skip += 1
        elif tag == "title":
            self._title = []
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n" + "#" * int(tag[1]) + " ")
        elif tag in ("p", "div", "li", "tr", "br", "section", "article", "table", "ul", "ol"):
            self.out.append("\n\n" if tag in ("p", "div", "section", "article", "table") else "\n")

    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript"):
            self._skip = max(0, self._skip - 1)
        elif tag == "title" and self._title is not None:
            self.title = " ".join("".join(self._title).split())
            self._title = None
        elif re.fullmatch(r"h[1-6]", tag):
            self.out.append("\n\n")

    def handle_data(self, data):
        if self._skip:
            return
        if self._title is not None:
            self._title.append(data)
            return
        self.out.append(re.sub(r"[ \t\r\f\v]+", " ", data))


def html_to_markdown(html: str) -> tuple[str, str]:
    parser = _HtmlToMarkdown()
    parser.feed(html)
    parser.close()
    text = "".join(parser.out)
    text = "\n".join(line.strip() for line in text.splitlines())
    return parser.title, re.sub(r"\n{3,}", "\n\n", text).strip()


def _finish(source: str, title: str, sections: list[tuple[str, str]], max_chars: int,
            extra: dict[str, Any] | None = None, start: int = 0) -> list[Chunk]:
    chunks = []
    position = start
    for section, body in sections:
        cited = _CITATION_RE.search(body)
        for piece in split_by_size(body, max_chars):
            more = dict(extra or {})
            if cited:  # every piece of a section keeps the section's cited source
                more["citation"] = " ".join(cited.group(1).split())
            chunks.append(Chunk(source=source, title=title, section=section, text=piece, position=position,
                                codes=codes_in(f"{section}\n{piece}"), extra=more))
            position += 1
    return chunks


def chunk_text(text: str, *, source: str, kind: str = "markdown", title: str | None = None,
               max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """Chunks of one document held in memory (kind: markdown, text or html)."""
    default_title = title or Path(source).stem.replace("_", " ").replace("-", " ")
    if kind == "html":
        html_title, text = html_to_markdown(text)
        default_title = title or html_title or default_title
        kind = "markdown"
    if kind == "markdown":
        doc_title, sections = sections_of_markdown(text, default_title)
    else:
        doc_title, sections = default_title, [(default_title, text)]
    return _finish(source, doc_title, sections, max_chars)


def chunk_jsonl(lines: Iterator[str], *, source: str, max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """One record per line: `text` (required), optional `title`, `section`, `url`, `id`; other keys kept."""
    chunks: list[Chunk] = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"line {lineno} is not valid JSON: {exc.msg}", where=source) from exc
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f"line {lineno} needs a string field 'text'", where=source,
                            hint='each line: {"text": "...", "title": "...", "section": "..."}')
        title = str(record.get("title") or Path(source).stem)
        section = str(record.get("section") or title)
        extra = {k: v for k, v in record.items() if k not in ("text", "title", "section", "source", "codes",
                                                                "position")
                 and isinstance(v, (str, int, float, bool))}
        chunks.extend(_finish(source, title, [(section, record["text"])], max_chars, extra, start=len(chunks)))
    return chunks


def chunk_file(path: Path, *, source: str | None = None, max_chars: int = DEFAULT_MAX_CHARS) -> list[Chunk]:
    """Chunks of a file; the kind comes from its suffix."""
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UserError(f"cannot ingest {path.name}: unsupported file type {path.suffix or '(none)'}",
                        where=str(path), hint=f"use one of: {', '.join(sorted(SUFFIXES))}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise UserError("file not found", where=str(path)) from exc
    except UnicodeDecodeError as exc:
        raise UserError("file is not UTF-8 text", where=str(path)) from exc
    source = source or path.name
    if kind == "jsonl":
        return chunk_jsonl(iter(text.splitlines()), source=source, max_chars=max_chars)
    return chunk_text(text, source=source, kind=kind, max_chars=max_chars)
