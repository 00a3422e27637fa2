"""Is the model server up? One GET with a short timeout, and what a failed connection means.

Used before a run's first episode (`clinseek apply`, `--resume`) and by `clinseek validate --check-host`, and to
tell connection failures (which feed the run's circuit breaker) from a live server's errors.
"""
from __future__ import annotations

import base64
import socket
import ssl
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from clinseek.hosts.base import HostCheck
from clinseek.redact import redact_text

PREFLIGHT_TIMEOUT_S = 5.0
_CONNECT_ERRORS = ("ConnectError", "ConnectTimeout")


def _chain(exc: BaseException | None):
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _describe_os_error(err: BaseException, netloc: str, timeout_s: float | None = None) -> str:
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused (nothing listens at {netloc})"
    if isinstance(err, socket.gaierror):
        return f"the host name in {netloc} does not resolve ({err.strerror or err})"
    if isinstance(err, (TimeoutError, socket.timeout)):
        return f"no connection within {timeout_s:g}s" if timeout_s else "the connection timed out"
    if isinstance(err, ssl.SSLError):
        return f"the TLS handshake failed ({getattr(err, 'reason', None) or err})"
    if isinstance(err, OSError) and err.strerror:
        return err.strerror[0].lower() + err.strerror[1:]
    return str(err) or type(err).__name__


def connect_failure(exc: BaseException, netloc: str = "the server") -> str | None:
    """Why a connection could not be opened (refused, DNS, no route, connect timeout, TLS), or None when the
    failure came after a connection was made (a reset, a slow or broken reply): the server was there."""
    found = False
    detail = None
    for link in _chain(exc):
        if type(link).__name__ in _CONNECT_ERRORS:
            found = True
            if type(link).__name__ == "ConnectTimeout" and detail is None:
                detail = "no connection within the connect timeout"
        elif isinstance(link, (ConnectionRefusedError, socket.gaierror, ssl.SSLError)):
            found = True
            detail = _describe_os_error(link, netloc)
        elif found and isinstance(link, OSError) and detail is None and link.strerror:
            detail = _describe_os_error(link, netloc)
    if not found:
        return None
    return detail or str(exc.__cause__ or exc)


def probe(url: str, headers: dict[str, str] | None = None, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> HostCheck:
    """GET `url`: reachable when any HTTP answer comes back (the body is kept in `check.body`)."""
    import http.client
    import urllib.error
    import urllib.request

    shown = redact_text(url)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return HostCheck(url=shown, reachable=False, problem="not an http(s) URL",
                         hint="host.base_url must look like http://HOST:PORT/v1")
    headers = {"Accept": "application/json", **(headers or {})}
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username is not None or parts.password is not None:  # as httpx does: userinfo becomes Basic auth
        pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
    plain = urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
    request = urllib.request.Request(plain, headers=headers, method="GET")
    check = HostCheck(url=shown, reachable=True)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 - http(s) only, above
            check.status = response.status
            check.body = response.read(1 << 20)
    except urllib.error.HTTPError as exc:
        check.status = exc.code
        check.body = exc.read(1 << 16) if exc.fp is not None else b""
    except urllib.error.URLError as exc:  # raised while connecting and sending: nothing answered
        reason = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
        check.reachable = False
        check.problem = redact_text(_describe_os_error(reason, netloc, timeout_s))
        check.hint = ("check host.base_url and that the server is running and reachable from this machine"
                      if not isinstance(reason, ssl.SSLError) else
                      "check the server's certificate, or point SSL_CERT_FILE at the site's CA bundle")
    except (TimeoutError, OSError, http.client.HTTPException) as exc:  # connected; the reply was slow or broken
        check.notes.append(redact_text(f"the server accepted the connection but did not answer GET {parts.path} "
                                       f"properly ({type(exc).__name__}: {exc})"))
    return check


def status_note(check: HostCheck, path: str) -> None:
    """Say what a live server's error status to the probe means."""
    status = check.status
    if status is None or status < 400:
        return
    if status in (401, 403):
        check.notes.append(f"the server is up but refused the credentials for GET {path} (HTTP {status}); "
                           f"check host.api_key")
    elif status == 404:
        check.notes.append(f"the server is up but has no {path} (HTTP 404); check that host.base_url is the "
                           f"server's API root (for vLLM, SGLang, Ollama and llama.cpp it ends in /v1)")
    else:
        check.notes.append(f"the server is up but answered HTTP {status} to GET {path}")


def json_body(check: HostCheck) -> Any:
    import json

    try:
        return json.loads(check.body or b"null")
    except ValueError:
        return None
