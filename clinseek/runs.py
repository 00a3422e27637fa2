"""Run directories: manifest, append-only results and trajectories, resume, the writer's lock.

results.jsonl is the commit record of an episode. The trajectory line is written first and carries the result,
so an episode killed between the two writes is completed on resume from its trajectory instead of being run (and
written) a second time. Each line goes out in one write() on a file opened for appending, then is flushed and
fsynced: a kill loses at most the episodes in flight.

A retried episode (`--retry-errors`, or a trajectory lost in trajectory mode) appends new lines with the next
`attempt` number; nothing is rewritten. Readers take one effective record per (qid, run_index): the last line of
the highest attempt (`effective_rows`). Two lines with the same key and attempt are a duplicate (the engine never
writes one): counted once, and named in a warning.
"""
from __future__ import annotations

import json
import os
import platform
import re
import socket
import subprocess
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from clinseek.errors import UserError
from clinseek.redact import redact_text

RESULTS = "results.jsonl"
TRAJECTORIES = "trajectories.jsonl"
MANIFEST = "manifest.json"
EVENTS = "events.log"
SCORES = "scores.json"
LOCK = "run.lock"

Key = tuple[str, int]
Warn = Callable[[str], Any] | None

_QID_RE = re.compile(r'"qid"\s*:\s*"((?:[^"\\]|\\.)*)"')
_RUN_RE = re.compile(r'"run_index"\s*:\s*(\d+)')


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def key_of(row: dict[str, Any]) -> Key:
    try:
        index = int(row.get("run_index") or 0)
    except (TypeError, ValueError):
        index = 0
    return str(row.get("qid")), index


def attempt_of(row: dict[str, Any]) -> int:
    try:
        return int(row.get("attempt") or 0)
    except (TypeError, ValueError):
        return 0


def describe_fragment(text: str) -> str:
    """Which episode a partial line belonged to, read from its first characters (records start with qid)."""
    qid, run = _QID_RE.search(text), _RUN_RE.search(text)
    if not qid:
        return "qid unknown"
    return f"qid {qid.group(1)}" + (f", run {run.group(1)}" if run else "")


def iter_lines(path: Path, warn: Warn = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for each well-formed line, streamed. A torn last line (a kill mid-write) or a
    malformed line is skipped; with `warn`, each one is named with its file, line and qid."""
    path = Path(path)
    if not path.exists():
        return
    pending: tuple[int, str, bool] | None = None  # a bad line, named once we know whether it was the last

    def name(lineno: int, head: str, ended: bool, last: bool) -> None:
        if warn:
            what = "torn last line" if last and not ended else "malformed line"
            warn(f"{path}:{lineno}: {what} ({describe_fragment(head)}) skipped")

    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if pending:
                name(*pending, last=False)
                pending = None
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if isinstance(row, dict):
                yield lineno, row
            else:
                pending = (lineno, line[:400], line.endswith("\n"))
    if pending:
        name(*pending, last=True)


def effective_index(path: Path, warn: Warn = None, kind: str = "record") -> dict[Key, int]:
    """The line number of each (qid, run_index)'s effective record: the last line of the highest attempt. Lines
    repeating a (key, attempt) are duplicates: counted once and, with `warn`, named. Holds no records."""
    best: dict[Key, tuple[int, int]] = {}
    first_line: dict[tuple[Key, int], int] = {}
    for lineno, row in iter_lines(path, warn):
        key, attempt = key_of(row), attempt_of(row)
        if (key, attempt) in first_line:
            if warn:
                warn(f"{path}:{lineno}: duplicate {kind} for qid {key[0]}, run {key[1]} (same as line "
                     f"{first_line[(key, attempt)]}); counted once")
        else:
            first_line[(key, attempt)] = lineno
        if key not in best or attempt >= best[key][0]:
            best[key] = (attempt, lineno)
    return {k: lineno for k, (_, lineno) in best.items()}


def iter_effective(path: Path, index: dict[Key, int]) -> Iterator[dict[str, Any]]:
    """The records at the lines of `index` (from effective_index), in file order; a second, streaming pass, so
    a large trajectories file is never held in memory."""
    wanted = set(index.values())
    for lineno, row in iter_lines(path):
        if lineno in wanted:
            yield row


def effective_rows(path: Path, warn: Warn = None, kind: str = "record") -> dict[Key, dict[str, Any]]:
    """One record per (qid, run_index), its effective one (see effective_index), in file order."""
    index = effective_index(path, warn, kind)
    return {key_of(row): row for row in iter_effective(path, index)}


def failure_reasons(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts of episodes that ended in `error`, per reason (first line of it), most frequent first."""
    reasons: Counter = Counter()
    for r in rows:
        if r.get("status") == "error":
            text = (str(r.get("reason") or "no reason recorded").strip().splitlines() or ["?"])[0]
            reasons[text[:200]] += 1
    return dict(reasons.most_common())


def resume_command(run_path: Path, manifest: dict[str, Any] | None = None) -> str:
    """The command that resumes a run: as recorded by `clinseek apply`, else rebuilt from the recipe path."""
    manifest = manifest or {}
    if manifest.get("resume_command"):
        return str(manifest["resume_command"])
    import shlex

    recipe = manifest.get("recipe_path") or "RECIPE"
    return f"clinseek apply {shlex.quote(str(recipe))} --resume {shlex.quote(str(run_path))}"


def _repair_tail(path: Path) -> tuple[int, str] | None:
    """Drop a partial last line so the next append starts on a fresh line (reads only the file's tail, unless
    there is something to drop). Returns (line number, first characters) of what was dropped."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open("rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return None
        pos, cut_at = end, 0
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            cut = fh.read(step).rfind(b"\n")
            if cut >= 0:
                cut_at = pos + cut + 1
                break
        fh.seek(cut_at)
        head = fh.read(400).decode("utf-8", errors="replace")
        fh.seek(0)
        lineno, left = 1, cut_at
        while left > 0:
            chunk = fh.read(min(1 << 20, left))
            lineno += chunk.count(b"\n")
            left -= len(chunk)
        fh.truncate(cut_at)
    return lineno, head


STATUSES = ("completed", "budget_exhausted", "timeout", "error")


def _record_models():
    """The typed shape of the two record kinds (pydantic, built on first use so importing runs.py stays light).
    Fields beyond these are kept (extra="allow"): a record may carry more, never less or of another type."""
    global _RESULT, _TRAJECTORY
    if _RESULT is None:
        from typing import Literal

        from pydantic import BaseModel, ConfigDict, Field

        class ResultRecord(BaseModel):
            """One line of results.jsonl: what one attempt of one (qid, run_index) ended with."""

            model_config = ConfigDict(extra="allow")
            qid: str
            run_index: int = Field(ge=0)
            task: str = ""
            task_type: str = "unknown"
            answer: list[str] = Field(default_factory=list)
            label: list[str] = Field(default_factory=list)
            candidates: list[str] = Field(default_factory=list)
            status: Literal[STATUSES]  # type: ignore[valid-type]
            reason: str | None = None
            usage: dict[str, Any] = Field(default_factory=dict)
            cost_usd: float | None = None
            cited_evidence: list[str] = Field(default_factory=list)

        class TrajectoryRecord(BaseModel):
            """One line of trajectories.jsonl: the canonical conversation of that attempt, with its result."""

            model_config = ConfigDict(extra="allow")
            qid: str
            run_index: int = Field(ge=0)
            messages: list[dict[str, Any]]
            tools: list[dict[str, Any]] = Field(default_factory=list)
            evidence: dict[str, Any] = Field(default_factory=dict)
            status: Literal[STATUSES]  # type: ignore[valid-type]

        _RESULT, _TRAJECTORY = ResultRecord, TrajectoryRecord
    return _RESULT, _TRAJECTORY


_RESULT = _TRAJECTORY = None


def check_records(result: dict[str, Any], trajectory: dict[str, Any]) -> None:
    """Refuse to write a record of the wrong shape: a bug upstream must not leave a line that every reader of
    the run (scoring, report, exporters, compare, resume) would then have to guess about."""
    from pydantic import ValidationError

    result_model, trajectory_model = _record_models()
    for model, record in ((result_model, result), (trajectory_model, trajectory)):
        try:
            model.model_validate(record)
        except ValidationError as exc:
            raise ValueError(f"refusing to write a malformed {model.__name__}: {exc}") from None


class RunDir:
    def __init__(self, path: Path, warn: Warn = None):
        self.path = path
        self.warn = warn  # where problems found while reading go (and events.log, once the run is ours)
        self.created = False
        self._lock = threading.Lock()
        self._attempt_lock = threading.Lock()
        self._attempts: dict[Key, int] | None = None
        self._lock_fd: int | None = None

    # Creation / resume -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, parent: Path, name: str, warn: Warn = None) -> "RunDir":
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
        base = parent / f"{safe}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = Path(f"{base}-{n}")
        path.mkdir(parents=True)
        run = cls(path, warn)
        run.created = True
        run.acquire_lock()
        return run

    @classmethod
    def open_existing(cls, path: Path, warn: Warn = None) -> "RunDir":
        if not (path / MANIFEST).exists():
            raise UserError(f"{path} is not a run directory (no {MANIFEST})",
                            hint="--resume takes a folder that clinseek apply created")
        run = cls(path, warn)
        run.acquire_lock()  # before repairing: only the one writer may touch the files
        for name in (RESULTS, TRAJECTORIES):
            dropped = _repair_tail(path / name)
            if dropped:
                lineno, head = dropped
                lost = "restored from its trajectory when that has it" if name == RESULTS else \
                    "that episode's trajectory is lost"
                run._warn(f"{path / name}:{lineno}: torn last line ({describe_fragment(head)}) dropped: the run "
                          f"was stopped mid-write; {lost}")
        run._complete_orphans()
        return run

    def _warn(self, text: str) -> None:
        self.event(f"warning: {text}")
        if self.warn:
            self.warn(text)

    def _complete_orphans(self) -> None:
        results = self.effective_results(warn=self._warn)
        effective_index(self.path / TRAJECTORIES, self._warn, "trajectory")  # only to name torn / duplicate lines
        orphans: dict[Key, tuple[int, dict[str, Any]]] = {}  # streamed: only the small result dicts are kept
        for _, traj in iter_lines(self.path / TRAJECTORIES):
            key, attempt, res = key_of(traj), attempt_of(traj), traj.get("result")
            current = results.get(key)
            if isinstance(res, dict) and (current is None or attempt > attempt_of(current)) and \
                    (key not in orphans or attempt >= orphans[key][0]):
                orphans[key] = (attempt, res)
        for key, (attempt, res) in orphans.items():
            self._append(RESULTS, {**res, "attempt": attempt})

    # The writer's lock -----------------------------------------------------------------------------------
    def acquire_lock(self) -> None:
        """Make this process the run directory's only writer: an exclusive, non-blocking flock on run.lock. The
        kernel releases it when the process ends, however it ends, so a stale lock cannot outlive its holder."""
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock to take
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                raw = os.pread(fd, 4096, 0).decode("utf-8", errors="replace")
            finally:
                os.close(fd)
            raise UserError(f"{self.path} is in use by another clinseek process ({_holder(raw)})",
                            hint="wait for that run to end, or stop it, then resume; two writers would run and "
                                 "write the same episodes twice") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": utcnow()})
                       + "\n").encode("utf-8"), 0)
        self._lock_fd = fd

    def close(self) -> None:
        """Release the writer's lock (the lock file stays: removing it would race a process opening it)."""
        if self._lock_fd is not None:
            fd, self._lock_fd = self._lock_fd, None
            os.close(fd)  # closing the last descriptor drops the flock

    def discard_if_unused(self) -> bool:
        """Remove a run directory this process created when no episode was written (a failed start)."""
        if not self.created:
            return False
        for name in (RESULTS, TRAJECTORIES):
            p = self.path / name
            if p.exists() and p.stat().st_size:
                return False
        self.close()
        for name in (MANIFEST, MANIFEST + ".tmp", EVENTS, LOCK, RESULTS, TRAJECTORIES):
            (self.path / name).unlink(missing_ok=True)
        try:
            self.path.rmdir()  # only if nothing else (a plugin's file) is in it
        except OSError:
            return False
        return True

    # Reading ---------------------------------------------------------------------------------------------
    def effective_results(self, warn: Warn = None) -> dict[Key, dict[str, Any]]:
        return effective_rows(self.path / RESULTS, warn, "result")

    def done_keys(self) -> set[Key]:
        return set(self.effective_results())

    def trajectory_keys(self) -> set[Key]:
        return {key_of(r) for _, r in iter_lines(self.path / TRAJECTORIES)}

    def results(self, warn: Warn = None) -> list[dict[str, Any]]:
        """The effective result of each episode (see effective_rows)."""
        return list(self.effective_results(warn).values())

    def attempts(self) -> list[dict[str, Any]]:
        """Every result line the engine wrote, retried attempts included (duplicates dropped)."""
        seen: dict[tuple[Key, int], dict[str, Any]] = {}
        for _, r in iter_lines(self.path / RESULTS):
            seen.setdefault((key_of(r), attempt_of(r)), r)
        return list(seen.values())

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))

    # Writing ---------------------------------------------------------------------------------------------
    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = (redact_text(json.dumps(record, ensure_ascii=False, default=str)) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def _next_attempt(self, key: Key) -> int:
        with self._attempt_lock:
            if self._attempts is None:
                self._attempts = {}
                for name in (RESULTS, TRAJECTORIES):
                    for _, row in iter_lines(self.path / name):
                        k = key_of(row)
                        self._attempts[k] = max(self._attempts.get(k, -1), attempt_of(row))
            n = self._attempts.get(key, -1) + 1
            self._attempts[key] = n
            return n

    def record_episode(self, result: dict[str, Any], trajectory: dict[str, Any]) -> None:
        check_records(result, trajectory)
        attempt = self._next_attempt(key_of(result))
        result = {**result, "attempt": attempt}
        self._append(TRAJECTORIES, {**trajectory, "attempt": attempt, "result": result})
        self._append(RESULTS, result)

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(redact_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str)), encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)

    def event(self, text: str) -> None:
        with self._lock, (self.path / EVENTS).open("a", encoding="utf-8") as fh:
            fh.write(f"{utcnow()} {redact_text(text)}\n")


def _holder(raw: str) -> str:
    try:
        info = json.loads(raw)
        return f"pid {info['pid']} on host {info['host']}, started {info['started']}"
    except (ValueError, KeyError, TypeError):
        return "its details are not written yet"


def git_revision(path: Path) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    rev = out.stdout.strip()
    dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain", "--untracked-files=no", "--", "."], capture_output=True,
                           text=True, timeout=5)
    return rev + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def environment_facts() -> dict[str, Any]:
    return {"python": platform.python_version(), "platform": platform.platform()}
