"""Process-wide redaction of secrets in text that leaves the process (run records, events.log, stderr).

Secret values are registered once (by the recipe's interpolation, the engine and the hosts) and replaced by `***`
wherever they appear later. The password of a URL's `user:password@` part is masked whether or not it was
registered. Values shorter than `MIN_SECRET_LEN` are never registered: replacing them everywhere would rewrite
ordinary data (lab values, ids) in the trajectories.
"""
from __future__ import annotations

import json
import re
import threading
from typing import Any, Callable, Iterable

MASK = "***"
MIN_SECRET_LEN = 6

# scheme://user:password@ (the password is masked) and scheme://token@ (a lone user part is often a token).
# Quotes end a match, so the pattern also works on JSON text without running from one string into the next.
_USERINFO = re.compile(r'(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<user>[^\s/?#@:"]*)(?::(?P<pw>[^\s/?#@"]*))?@')
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
# Names of variables and keys whose value is a credential (matched as words of NAME_LIKE_THIS, or inside one).
_SECRET_WORDS = frozenset({"key", "apikey", "pw", "pwd", "pass", "passwd", "password", "token", "secret", "auth",
                           "credential", "credentials", "sig", "signature", "bearer"})
# A key or variable name that says its value is a secret (the recipe loader and interpolation use it too).
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|passwd|credential|auth)", re.I)

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def add_secret(value: Any) -> None:
    """Redact `value` from every text that goes out of this process from now on."""
    add_secrets([value])


def add_secrets(values: Iterable[Any]) -> None:
    global _pattern
    new = {str(v) for v in values if v is not None and len(str(v)) >= MIN_SECRET_LEN}
    new |= {json.dumps(v, ensure_ascii=False)[1:-1] for v in new}  # as it appears inside JSON text
    new -= _secrets
    if not new:
        return
    with _lock:
        _secrets.update(new)
        # Longest first, so a secret containing another is masked whole.
        _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True)))


def secret_name(name: str) -> bool:
    """Whether a variable or key name says its value is a credential (OPENAI_API_KEY, db.password, PW, ...)."""
    if SECRET_KEY.search(name):
        return True
    return any(word in _SECRET_WORDS for word in re.split(r"[^a-z0-9]+", name.lower()))


def _mask_userinfo(m: re.Match[str]) -> str:
    if m.group("pw") is not None:
        return f"{m.group('head')}{m.group('user')}:{MASK}@"
    return f"{m.group('head')}{MASK}@" if m.group("user") else m.group(0)


def redact_text(text: str) -> str:
    """`text` with registered secrets and URL passwords replaced by ***."""
    if not text:
        return text
    if "@" in text and "://" in text:
        text = _USERINFO.sub(_mask_userinfo, text)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    return text


def redact_error(exc: Any) -> Any:
    """Redact a ClinseekError's message, where and hint in place (its rendering is built from them)."""
    for attr in ("message", "where", "hint"):
        value = getattr(exc, attr, None)
        if isinstance(value, str):
            setattr(exc, attr, redact_text(value))
    problems = getattr(exc, "problems", None)
    if isinstance(problems, list):
        exc.problems = [redact_text(p) if isinstance(p, str) else p for p in problems]
    return exc


def _url_secret_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the user:password part and the query string of each URL in `text`."""
    spans = []
    for m in _SCHEME.finditer(text):
        start = m.end()
        end = start
        while end < len(text) and text[end] not in "/?#" and not text[end].isspace():
            end += 1
        at = text.rfind("@", start, end)
        if at >= 0:
            spans.append((start, at))
        if end < len(text) and text[end] in "/?":
            q = text.find("?", end)
            stop = next((i for i in range(end, len(text)) if text[i].isspace()), len(text))
            if 0 <= q < stop:
                frag = text.find("#", q, stop)
                spans.append((q, frag if frag >= 0 else stop))
    return spans


def substitute(pattern: re.Pattern[str], text: str, replace: Callable[[re.Match[str]], str],
               secrets: set[str]) -> str:
    """`pattern.sub(replace, text)` for `${env:..}` / `${site:..}` references, noting which substituted values are
    secrets: those of a secret-looking name, and those that land in a URL's user:password@ part or query string
    (`http://user:${env:PW}@host`, `?sig=${env:SAS}`). They are added to `secrets` and to the redactor."""
    pieces: list[str] = []
    subs: list[tuple[int, int, str, str]] = []
    pos = size = 0
    for m in pattern.finditer(text):
        literal = text[pos:m.start()]
        value = str(replace(m))
        pieces += [literal, value]
        size += len(literal)
        subs.append((size, size + len(value), value, m.group(2) if m.re.groups >= 2 else ""))
        size += len(value)
        pos = m.end()
    pieces.append(text[pos:])
    out = "".join(pieces)
    if subs:
        spans = _url_secret_spans(out) if "://" in out else []
        found = [value for start, end, value, name in subs
                 if value and (secret_name(name) or any(start < e and s < end for s, e in spans))]
        secrets.update(found)
        add_secrets(found)
    return out
