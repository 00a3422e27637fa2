"""`${env:NAME}`, `${env:NAME:-default}` and `${site:key.path}` in recipe strings.

Values that come from the environment or the site file are remembered so they can be redacted from manifests,
logs and error messages when they look like secrets (and always when the key says so).
"""
from __future__ import annotations

import os
import re
from typing import Any, Callable

from clinseek.redact import SECRET_KEY, substitute  # substitute also records secrets spliced into URLs

REF = re.compile(r"\$\{(env|site):([A-Za-z0-9_.\-]+)(?::-([^}]*))?\}")


def lookup_site(site: dict[str, Any], dotted: str) -> Any:
    cur: Any = site
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise KeyError(dotted)
        cur = cur[part]
    return cur


def interpolate(data: Any, site: dict[str, Any] | None, where: Callable[[tuple], str | None],
                secrets: set[str], path: tuple = (), failed: set[tuple] | None = None) -> tuple[Any, list[str]]:
    """Return (data with references replaced, problems). Secret-looking values are added to `secrets`; the
    paths of values whose reference could not be resolved are added to `failed` when given."""
    problems: list[str] = []

    def fail(p: tuple, message: str) -> None:
        problems.append(_fmt(where(p), message))
        if failed is not None:
            failed.add(p)

    def walk(value: Any, p: tuple) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, p + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, p + (i,)) for i, v in enumerate(value)]
        if isinstance(value, str) and "${" in value:
            return sub(value, p)
        return value

    def resolve(kind: str, name: str, default: str | None, p: tuple) -> Any:
        key_is_secret = bool(p) and isinstance(p[-1], str) and bool(SECRET_KEY.search(p[-1]))
        if kind == "env":
            if name in os.environ:
                val: Any = os.environ[name]
            elif default is not None:
                val = default
            else:
                fail(p, f"environment variable {name} is not set (set it, or write ${{env:{name}:-default}})")
                return None
            if key_is_secret or SECRET_KEY.search(name):
                secrets.add(str(val))
            return val
        if site is None:
            fail(p, f"${{site:{name}}} needs a site file: pass --site site.yaml with the key {name}")
            return None
        try:
            val = lookup_site(site, name)
        except KeyError:
            fail(p, f"site key {name!r} is not set in the site file "
                    f"(add it there, e.g. `{name.split('.')[-1]}: ...`)")
            return None
        if key_is_secret or SECRET_KEY.search(name) or name.split(".")[0] == "secrets":
            secrets.add(str(val))
        return val

    def sub(text: str, p: tuple) -> Any:
        whole = REF.fullmatch(text)
        if whole:  # a value that is one reference keeps the referenced type (int, bool, list)
            return resolve(whole.group(1), whole.group(2), whole.group(3), p)
        return substitute(REF, text, lambda m: str(resolve(m.group(1), m.group(2), m.group(3), p)), secrets)

    return walk(data, path), problems


def _fmt(where: str | None, message: str) -> str:
    return f"{where}: {message}" if where else message


def redact(obj: Any, secrets: set[str]) -> Any:
    """Replace secret values (and values under secret-looking keys) with '***'; mask DSN passwords."""
    secrets = {s for s in secrets if s and len(s) >= 3}

    def scrub(value: Any, key: str | None = None) -> Any:
        if isinstance(value, dict):
            return {k: scrub(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [scrub(v, key) for v in value]
        if isinstance(value, str):
            if key and SECRET_KEY.search(key) and value:
                return "***"
            out = re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", value)
            for s in secrets:
                out = out.replace(s, "***")
            return out
        return value

    return scrub(obj)
