"""`clinseek cache stats|clear`: look at or empty the host response cache."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from clinseek.errors import UserError

_PATH_HELP = "cache file (default: $CLINSEEK_CACHE/responses.sqlite or ~/.cache/clinseek/responses.sqlite)"


def _path(path: str | None) -> Path:
    from clinseek.hosts.cache import default_cache_path

    return Path(path).expanduser() if path else default_cache_path()


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if ts else "-"


@click.group(name="cache")
def cache() -> None:
    """The host response cache (`host.cache` in a recipe)."""


@cache.command()
@click.option("--path", type=click.Path(dir_okay=False), help=_PATH_HELP)
@click.option("--json", "as_json", is_flag=True, help="print the statistics as JSON")
def stats(path: str | None, as_json: bool) -> None:
    """Entries, size and the models they came from."""
    from clinseek.hosts.cache import ResponseCache

    file = _path(path)
    if not file.exists():
        if as_json:
            click.echo(json.dumps({"path": str(file), "entries": 0, "bytes": 0, "by_model": []}))
        else:
            click.echo(f"{file}: no cache yet (0 entries)")
        return
    try:
        info = ResponseCache(file).stats()
    except Exception as exc:  # noqa: BLE001 - a file that is not a cache is a user mistake
        raise UserError(f"cannot read the cache: {exc}", where=str(file),
                        hint="point --path at a responses.sqlite written by clinseek") from exc
    if as_json:
        click.echo(json.dumps(info))
        return
    click.echo(f"{info['path']}: {info['entries']} entries, {info['bytes'] / 1e6:.2f} MB")
    click.echo(f"  oldest {_when(info['oldest'])}, newest {_when(info['newest'])}")
    for group in info["by_model"]:
        click.echo(f"  {group['entries']:>8}  {group['provider']}  {group['model']}")


@cache.command()
@click.option("--path", type=click.Path(dir_okay=False), help=_PATH_HELP)
@click.option("--provider", help="remove only this provider's entries")
@click.option("--model", help="remove only this model's entries")
def clear(path: str | None, provider: str | None, model: str | None) -> None:
    """Remove cached responses (all, or one provider's / model's)."""
    from clinseek.hosts.cache import ResponseCache

    file = _path(path)
    if not file.exists():
        click.echo(f"{file}: no cache, nothing to clear")
        return
    try:
        store = ResponseCache(file)
        removed = store.clear(provider=provider, model=model)
        store.close()
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"cannot clear the cache: {exc}", where=str(file)) from exc
    click.echo(f"{file}: removed {removed} entr{'y' if removed == 1 else 'ies'}")
