"""`clinseek import reference`: other systems' runs as clinseek run directories."""
from __future__ import annotations

from pathlib import Path

import click


@click.group("import")
def import_group() -> None:
    """Turn runs made by other systems into clinseek run directories (score, report, compare, export)."""


@import_group.command("reference")
@click.argument("results", type=click.Path(exists=True, path_type=Path))
@click.option("--benchmark", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The ClinSeek-Bench file (JSONL or JSON array) the run was made on: labels, task, task_type "
                   "and candidates for rows that lack them.")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="The run directory to create (new, or an empty folder).")
def reference(results, benchmark, out):
    """Import the reference ClinSeekAgent system's results.jsonl (RESULTS, or the folder holding it) as a run
    directory: results, trajectories with evidence ids on the tool results, and a manifest naming the source
    files and their sha256."""
    from clinseek.reference_runs import import_reference

    manifest = import_reference(results, out, benchmark=benchmark,
                                warn=lambda m: click.echo(f"warning: {m}", err=True))
    counts = ", ".join(f"{k} {v}" for k, v in sorted(manifest["counts"].items()))
    click.echo(f"imported {sum(manifest['counts'].values())} episodes of {manifest['task_count']} questions "
               f"({counts}) into {out}" + (f"; {manifest['rows_skipped']} row(s) skipped"
                                           if manifest["rows_skipped"] else ""))
