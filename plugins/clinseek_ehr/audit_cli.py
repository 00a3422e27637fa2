"""`clinseek audit RECIPE`: check that the ehr tools show no task anything after its cutoff or of another patient."""
from __future__ import annotations

import json
from types import SimpleNamespace

import click


@click.command("audit")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--site", type=click.Path(dir_okay=False), default=None, help="Site file for ${site:...} values.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a recipe value.")
@click.option("--limit", type=int, default=None, help="Audit at most this many tasks.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Tasks audited at once.")
@click.pass_context
def audit(ctx, recipe, site, overrides, limit, as_json, workers):
    """Enumerate everything the ehr tools can show each task of RECIPE and count rows after the cutoff, unmasked
    future values and other patients' rows, per table. Tasks whose patient the database lacks are counted apart
    (nothing of theirs can be audited). Exits 1 when any count is not zero."""
    from clinseek_ehr.audit import audit_tasks

    loaded, toolset, tasks = load_for_audit(recipe, site, overrides, limit)
    facts = f"profile {toolset.profile.name}, backend {toolset.backend.dialect}, cutoff {toolset.config.cutoff}"
    try:
        # A task whose patient the database lacks shows nothing, so it would pass the audit vacuously: counted.
        missing = toolset.missing_patients([t.view() for t in tasks])
        report = audit_tasks(toolset, [t for t in tasks if t.qid not in missing], workers=workers)
    finally:
        toolset.close()
    if as_json:
        click.echo(json.dumps({"tasks": report.tasks, "violations": report.violations,
                               "tables": {k: vars(v) for k, v in sorted(report.tables.items())},
                               "examples": report.examples, "missing_patients": len(missing),
                               "missing_examples": dict(list(missing.items())[:5])}, indent=2))
    else:
        click.echo(f"audit of {loaded.path}: {facts}")
        click.echo(report.render())
        if missing:
            first = "; ".join(f"{q}: {why}" for q, why in list(missing.items())[:3])
            click.echo(f"not audited: {len(missing)} task(s) whose patient or admission the database does not "
                       f"have ({first})")
    if report.violations or missing:
        ctx.exit(1)


def load_for_audit(recipe, site=None, overrides=(), limit=None):
    """The recipe's ehr toolset (opened) and its tasks, without needing its host."""
    from clinseek.engine import RunContext, no_tasks_error, select_tasks
    from clinseek.errors import UserError
    from clinseek.plugins import get_registry
    from clinseek.recipe.load import load_recipe
    from clinseek_ehr.toolset import EhrConfig, EhrToolset

    loaded = load_recipe(recipe, site=site, overrides=overrides)
    uses = [(i, u) for i, u in enumerate(loaded.recipe.tools) if u.use == EhrToolset.name]
    if not uses:
        raise UserError("the recipe uses no ehr toolset: nothing to audit", where=str(loaded.path))
    i, use = uses[0]
    context = RunContext(recipe_dir=loaded.dir)
    try:
        config = EhrConfig.model_validate(use.with_)
    except Exception as exc:  # pydantic ValidationError
        raise UserError(f"invalid ehr configuration: {exc}", where=loaded.where(("tools", i, "with"))) from None
    registry = get_registry()
    src_cls = registry.get("task_sources", loaded.recipe.tasks.source, where=loaded.where(("tasks", "source")))
    path = loaded.resolve_path(loaded.recipe.tasks.path) if loaded.recipe.tasks.path else None
    source = src_cls({**loaded.recipe.tasks.with_, "path": path, "on_error": loaded.recipe.tasks.on_error}, context)
    selection = SimpleNamespace(recipe=loaded.recipe, source=source, loaded=loaded)
    tasks = select_tasks(selection, limit)
    if not tasks:  # nothing audited is not "0 violations"
        raise no_tasks_error(selection)
    toolset = EhrToolset(config, context)
    toolset.open()
    return loaded, toolset, tasks
