"""Run directories: manifest, append-only results and trajectories, resume.

results.jsonl is the commit record of an episode. The trajectory line is written first and carries the result,
so an episode killed between the two writes is completed on resume from its trajectory instead of being run (and
written) a second time. Each line goes out in one write() on a file opened for appending, then is flushed and
fsynced: a kill loses at most the episodes in flight.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from clinseek.errors import UserError

RESULTS = "results.jsonl"
TRAJECTORIES = "trajectories.jsonl"
MANIFEST = "manifest.json"
EVENTS = "events.log"


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Rows of a jsonl file; a torn last line (from a kill) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _repair_tail(path: Path) -> None:
    """Drop a partial last line so the next append starts on a fresh line (reads only the file's tail)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb+") as fh:
        end = fh.seek(0, os.SEEK_END)
        fh.seek(end - 1)
        if fh.read(1) == b"\n":
            return
        pos = end
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            cut = fh.read(step).rfind(b"\n")
            if cut >= 0:
                fh.truncate(pos + cut + 1)
                return
        fh.truncate(0)


class RunDir:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    # Creation / resume -----------------------------------------------------------------------------------
    @classmethod
    def create(cls, parent: Path, name: str) -> "RunDir":
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
        base = parent / f"{safe}-{stamp}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = Path(f"{base}-{n}")
        path.mkdir(parents=True)
        return cls(path)

    @classmethod
    def open_existing(cls, path: Path) -> "RunDir":
        if not (path / MANIFEST).exists():
            raise UserError(f"{path} is not a run directory (no {MANIFEST})",
                            hint="--resume takes a folder that clinseek apply created")
        run = cls(path)
        for name in (RESULTS, TRAJECTORIES):
            _repair_tail(path / name)
        run._complete_orphans()
        return run

    def _complete_orphans(self) -> None:
        done = self.done_keys()
        for traj in read_jsonl(self.path / TRAJECTORIES):
            key = (str(traj.get("qid")), int(traj.get("run_index", 0)))
            if key not in done and isinstance(traj.get("result"), dict):
                self._append(RESULTS, traj["result"])
                done.add(key)

    # Reading ---------------------------------------------------------------------------------------------
    def done_keys(self) -> set[tuple[str, int]]:
        return {(str(r.get("qid")), int(r.get("run_index", 0))) for r in read_jsonl(self.path / RESULTS)}

    def trajectory_keys(self) -> set[tuple[str, int]]:
        return {(str(r.get("qid")), int(r.get("run_index", 0))) for r in read_jsonl(self.path / TRAJECTORIES)}

    def results(self) -> list[dict[str, Any]]:
        return list(read_jsonl(self.path / RESULTS))

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.path / MANIFEST).read_text(encoding="utf-8"))

    # Writing ---------------------------------------------------------------------------------------------
    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = (json.dumps(record, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        with self._lock:
            fd = os.open(self.path / name, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def record_episode(self, result: dict[str, Any], trajectory: dict[str, Any]) -> None:
        key = (str(result["qid"]), int(result["run_index"]))
        written = self.trajectory_keys_cache()
        if key not in written:
            self._append(TRAJECTORIES, trajectory)
            written.add(key)
        self._append(RESULTS, result)

    def trajectory_keys_cache(self) -> set[tuple[str, int]]:
        if not hasattr(self, "_traj_keys"):
            self._traj_keys = self.trajectory_keys()
        return self._traj_keys

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        tmp = self.path / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
        os.replace(tmp, self.path / MANIFEST)

    def event(self, text: str) -> None:
        with self._lock, (self.path / EVENTS).open("a", encoding="utf-8") as fh:
            fh.write(f"{utcnow()} {text}\n")


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
