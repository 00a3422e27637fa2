"""`clinseek data ...`: build the synthetic cohort, build the benchmark tasks, import a MIMIC-IV download."""
from __future__ import annotations

from pathlib import Path

import click

from clinseek.errors import UserError


@click.group()
def data() -> None:
    """Cohorts and benchmark tasks: a synthetic MIMIC-IV-shaped demo, or your own MIMIC-IV."""


@data.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder to write cohort.duckdb and files/ (CXR images) into.")
@click.option("--patients", type=click.IntRange(1, 100_000), default=None, show_default="200",
              help="Number of synthetic patients.")
@click.option("--seed", type=int, default=7, show_default=True, help="Random seed; same seed, same rows.")
@click.option("--no-images", is_flag=True, help="Skip rendering the chest X-ray PNGs (metadata is still written).")
@click.option("--tasks/--no-tasks", "with_tasks", default=True, show_default=True,
              help="Also write tasks.jsonl next to the database.")
@click.option("--per-task", type=click.IntRange(1), default=None, show_default="40", help="Tasks per task name.")
@click.option("--chunk-patients", type=click.IntRange(250), default=5000, show_default=True,
              help="Patients generated per chunk (bounds memory for large builds).")
@click.option("--memory-limit", default="1GB", show_default=True, help="DuckDB memory limit while sorting.")
def demo(out: Path, patients: int | None, seed: int, no_images: bool, with_tasks: bool, per_task: int | None,
         chunk_patients: int, memory_limit: str) -> None:
    """Build a synthetic MIMIC-IV-shaped cohort (DuckDB + CXR PNGs) and its benchmark tasks."""
    from clinseek_demo.benchmark import build_tasks
    from clinseek_demo.build import build_cohort
    from clinseek_demo.demo import DEFAULT_PATIENTS, DEFAULT_PER_TASK, TASKS_NAME

    rep = build_cohort(out, patients=patients or DEFAULT_PATIENTS, seed=seed, images=not no_images,
                       chunk_patients=chunk_patients, memory_limit=memory_limit,
                       progress=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {rep.db} ({rep.rows['patients']} patients, {rep.rows['admissions']} admissions, "
               f"{rep.images} images) in {rep.seconds:.1f} s")
    if with_tasks:
        t = build_tasks(rep.db, out / TASKS_NAME, per_task=per_task or DEFAULT_PER_TASK, seed=seed)
        click.echo(f"wrote {t.path} ({sum(t.counts.values())} tasks)")


@data.command()
@click.argument("db", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The tasks .jsonl file to write.")
@click.option("--per-task", type=click.IntRange(1), default=50, show_default=True, help="Tasks per task name.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed for prediction times and sampling.")
@click.option("--task", "--only", "only", multiple=True, help="Only these task names (repeatable).")
@click.option("--families", type=click.Choice(["clinseek", "reference"]), default="clinseek", show_default=True,
              help="clinseek: this project's families (mortality, los_gt_3, ...); reference: ClinSeek-Bench's text "
                   "families with its names (ED_Hospitalization, ..., labevents, ...), see docs/data.md.")
@click.option("--balance/--natural", default=True, show_default=True,
              help="Yes/no tasks: up to half positives (balance) or the cohort's own prevalence (natural).")
@click.option("--with-input/--no-input", "with_input", default=True, show_default=True,
              help="Write each row's `input`: the curated evidence package (the patient's most recent events of the "
                   "24 h before the prediction time, at most 100) that `agent.evidence: curated` answers from.")
def tasks(db: Path, out: Path, per_task: int, seed: int, only: tuple[str, ...], families: str, balance: bool,
          with_input: bool) -> None:
    """Build ClinSeek-Bench-style task rows from a cohort database (synthetic or imported MIMIC-IV)."""
    if families == "reference":
        from clinseek_demo.reference_families import REFERENCE_TASKS, RISK, build_reference_tasks

        yes_no = set(RISK)
        rep = build_reference_tasks(db, out, per_task=per_task, seed=seed, balance=balance,
                                    tasks=only or REFERENCE_TASKS, with_input=with_input)
    else:
        from clinseek_demo.benchmark import ALL_TASKS, RISK_TASKS, build_tasks

        yes_no = set(RISK_TASKS) | {"cxr_finding_presence"}
        rep = build_tasks(db, out, per_task=per_task, seed=seed, balance=balance, tasks=only or ALL_TASKS,
                          image_root=db.parent.resolve(), with_input=with_input)
    for name, n in rep.counts.items():
        pos = f", {rep.positives[name]} yes" if name in yes_no else ""
        click.echo(f"{name:22s} {n:5d}{pos}")
    click.echo(f"wrote {rep.path}")


@data.command("import-mimic-iv")
@click.argument("src", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The DuckDB file to write.")
@click.option("--cxr", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="MIMIC-CXR-JPG folder (metadata csv.gz, optional chexpert labels) if not under SRC.")
def import_mimic_iv(src: Path, out: Path, cxr: Path | None) -> None:
    """Convert a credentialed MIMIC-IV 3.1 download (hosp/, icu/, note/ csv.gz) into the cohort's DuckDB layout."""
    from clinseek_demo.importer import import_mimic_iv as run

    rep = run(src, out, cxr_dir=cxr, progress=lambda m: click.echo(m, err=True))
    click.echo(f"wrote {rep.db}: " + ", ".join(f"{t} {n}" for t, n in rep.rows.items()))
    for w in rep.warnings:
        click.echo(f"warning: {w}", err=True)


@data.command("train-phantom")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("models"), show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--n-train", type=int, default=None, help="training images (default: the committed artifact's)")
@click.option("--epochs", type=int, default=None, help="epochs (default: the committed artifact's)")
def train_phantom_cmd(out_dir: Path, seed: int, n_train: int | None, epochs: int | None) -> None:
    """Train the phantom CXR CNN on synthetic radiographs; write <out>/phantom_cxr.onnx and its card (needs torch)."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UserError("train-phantom needs torch", hint="pip install 'clinseek[train]'") from None
    from clinseek_demo.phantom import PhantomPlan, train_phantom

    plan = PhantomPlan(seed=seed)
    if n_train is not None:
        plan.n_train, plan.n_val, plan.n_test = n_train, max(50, n_train // 5), max(50, n_train // 4)
    if epochs is not None:
        plan.epochs = epochs
    card = train_phantom(out_dir, plan, log=lambda m: click.echo(m, err=True))
    click.echo(str(card))
