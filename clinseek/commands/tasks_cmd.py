"""`clinseek tasks RECIPE`: the tasks a recipe would run (their qids, for `clinseek call --task`)."""
from __future__ import annotations

import json

import click

from clinseek.commands.common import load_and_assemble, recipe_arg, set_opt, site_opt


@click.command()
@recipe_arg
@site_opt
@set_opt
@click.option("--task", "task_names", multiple=True, help="Only this task (e.g. mortality; repeatable).")
@click.option("--task-type", "task_types", multiple=True,
              help="Only this task type (e.g. risk_prediction; repeatable).")
@click.option("--qid", "qid_part", default=None, help="Only qids containing this text.")
@click.option("--all", "everything", is_flag=True,
              help="Every task of the source, ignoring the recipe's tasks.filter, sample and limit.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="List at most this many.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (without labels).")
def tasks(recipe, site, overrides, task_names, task_types, qid_part, everything, limit, as_json):
    """List the tasks RECIPE selects (after its tasks.filter, sample and limit), one per line: qid, task,
    task type, patient, admission and prediction time. Labels are never shown."""
    from clinseek.engine import select_tasks

    assembly = load_and_assemble(recipe, site, overrides)
    selected = assembly.source.iter_tasks() if everything else select_tasks(assembly)
    shown = 0
    for t in selected:
        if (task_names and t.task not in task_names) or (task_types and t.task_type not in task_types) \
                or (qid_part and qid_part not in t.qid):
            continue
        if limit is not None and shown >= limit:
            break
        shown += 1
        if as_json:
            click.echo(json.dumps({"qid": t.qid, "task": t.task, "task_type": t.task_type,
                                   "subject_id": t.subject_id, "hadm_id": t.hadm_id,
                                   "prediction_time": t.prediction_time.isoformat()}))
        else:
            click.echo(f"{t.qid}\t{t.task}\t{t.task_type}\tsubject {t.subject_id}\t"
                       f"hadm {t.hadm_id if t.hadm_id is not None else '-'}\t{t.prediction_time.isoformat()}")
    click.echo(f"{shown} task{'s' * (shown != 1)}", err=True)
