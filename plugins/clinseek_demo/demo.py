"""The demo cohort and its tasks, built on first use into the user's cache and reused afterwards.

The folder is named by (generator version, patients, seed). A build happens in a temporary sibling folder and is
renamed into place when complete, under an exclusive file lock, so two processes asking at once build it once and
a killed build never leaves a half-written demo behind.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from clinseek_demo import DB_NAME, GENERATOR_VERSION

DEFAULT_PATIENTS = 200  # builds in seconds on two cores, images included, and gives every task family rows
DEFAULT_SEED = 7
DEFAULT_PER_TASK = 40
TASKS_NAME = "tasks.jsonl"


@dataclass(frozen=True)
class DemoPaths:
    root: Path
    db: Path
    tasks: Path


def cache_root(cache_dir: Path | None = None) -> Path:
    from clinseek.paths import default_cache_dir

    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def demo_folder(patients: int, seed: int, cache_dir: Path | None = None) -> Path:
    return cache_root(cache_dir) / "demo" / f"v{GENERATOR_VERSION}-p{patients}-s{seed}"


def _paths(root: Path) -> DemoPaths:
    return DemoPaths(root=root, db=root / DB_NAME, tasks=root / TASKS_NAME)


def ensure_demo(patients: int = DEFAULT_PATIENTS, seed: int = DEFAULT_SEED, cache_dir: Path | None = None,
                *, images: bool = True, per_task: int = DEFAULT_PER_TASK, log=None) -> DemoPaths:
    """Return the demo cohort for (patients, seed), building it first if the cache lacks it.

    `log(text)` hears about a build (it takes about half a minute), so a first run does not look stuck."""
    from clinseek_demo.benchmark import build_tasks

    root = demo_folder(patients, seed, cache_dir)
    if not images:
        root = root.with_name(root.name + "-noimg")
    paths = _paths(root)
    if paths.tasks.exists():
        return paths
    root.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(root.parent / (root.name + ".lock")):   # one builder per cache folder, across processes
        if paths.tasks.exists():  # another process finished it while we waited
            return paths
        tmp = Path(tempfile.mkdtemp(prefix=root.name + ".tmp-", dir=root.parent))
        if log:
            log(f"building the demo cohort ({patients} patients, seed {seed}) into {root}: first use only")
        try:
            build_cohort(tmp, patients=patients, seed=seed, images=images)
            build_tasks(tmp / DB_NAME, tmp / TASKS_NAME, per_task=per_task, seed=seed)
            if root.exists():  # a stale partial folder from an old layout: replace it
                shutil.rmtree(root)
            tmp.rename(root)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return paths


def build_cohort(*args, **kwargs):
    """The builder, imported on first use (numpy, pandas and DuckDB only when a build really happens)."""
    from clinseek_demo.build import build_cohort as build

    return build(*args, **kwargs)
