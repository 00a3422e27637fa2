"""`clinseek validate | apply | tools | call`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from clinseek.commands.common import load, load_and_assemble, recipe_arg, set_opt, site_opt


@click.command()
@recipe_arg
@site_opt
@set_opt
def validate(recipe, site, overrides):
    """Check a recipe: schema, plugin names, each toolset's and host's config, and that the prompt templates
    render against the first task. Prints every problem, one per line; exit 2 when there is any."""
    from clinseek.engine import make_runner, select_tasks

    assembly = load_and_assemble(recipe, site, overrides)
    tasks = select_tasks(assembly, limit=1)
    if not tasks:
        click.echo(f"{recipe}: warning: the task source yields no tasks", err=True)
    else:
        task = tasks[0]
        if assembly.recipe.agent.evidence == "curated" and not task.input:
            assembly.open()
            try:
                make_runner(assembly, task, 0)
            finally:
                assembly.close()
        else:
            make_runner(assembly, task, 0, evidence="" if assembly.recipe.agent.evidence == "curated" else None)
    names = [s["name"] for s in assembly.toolbox.schemas(assembly.recipe.agent.evidence == "seek")]
    click.echo(f"{recipe}: ok ({assembly.recipe.host.provider} host; tools: {', '.join(names)})")


def _progress(result, done, total):
    status = result["status"]
    extra = f" ({result['reason']})" if result.get("reason") and status != "completed" else ""
    turns, calls = result["turns"], result["tool_calls"]
    click.echo(f"[{done}/{total}] {result['qid']}#{result['run_index']} {status}{extra}: "
               f"{turns} turn{'s' * (turns != 1)}, {calls} tool call{'s' * (calls != 1)}", err=True)


@click.command()
@recipe_arg
@site_opt
@set_opt
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Run at most this many tasks.")
@click.option("--workers", type=click.IntRange(min=1), default=4, show_default=True,
              help="Episodes run at once.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Parent folder for the run directory (default: the recipe's output.dir).")
@click.option("--resume", "resume", type=click.Path(file_okay=False, exists=True), default=None,
              help="Finish an earlier run: only the missing (task, run) pairs are run.")
@click.option("--quiet", is_flag=True, help="No per-episode progress lines.")
def apply(recipe, site, overrides, limit, workers, out, resume, quiet):
    """Assemble the agent a recipe describes and run it over its tasks."""
    from clinseek.engine import assemble, run_assembly, select_tasks
    from clinseek.runs import RunDir

    loaded = load(recipe, site, overrides)
    assembly = assemble(loaded)
    tasks = select_tasks(assembly, limit=limit)
    if resume:
        run = RunDir.open_existing(Path(resume))
        previous = run.manifest().get("recipe_sha256")
        if previous and previous != loaded.sha256:
            from clinseek.errors import UserError

            raise UserError(f"--resume {resume}: that run was made from a different recipe (sha256 "
                            f"{previous[:12]} vs {loaded.sha256[:12]})",
                            hint="resume with the same recipe, site and --set values, or start a new run")
    else:
        parent = Path(out) if out else loaded.resolve_path(loaded.recipe.output.dir) \
            if not Path(loaded.recipe.output.dir).is_absolute() else Path(loaded.recipe.output.dir)
        if not out and loaded.recipe.output.dir == "runs":
            parent = Path("runs")  # the default lands in the working folder, not beside the recipe
        run = RunDir.create(parent, loaded.recipe.name)
    click.echo(f"run directory: {run.path}", err=True)
    counts = run_assembly(assembly, tasks, run, workers=workers, progress=None if quiet else _progress)
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    click.echo(f"episodes: {summary or 'none'}")
    _finish_run(assembly, run)
    if counts.get("error"):
        click.echo(f"{counts['error']} episode(s) ended in error; see {run.path / 'events.log'} and results.jsonl",
                   err=True)
        sys.exit(1)


def _finish_run(assembly, run) -> None:
    """Score, report and export as the recipe asks; each step is optional while its module is absent."""
    from clinseek.postrun import finish_run

    for line in finish_run(assembly, run):
        click.echo(line)


@click.command()
@recipe_arg
@site_opt
@set_opt
@click.option("--json", "as_json", is_flag=True, help="Print the schemas as JSON.")
def tools(recipe, site, overrides, as_json):
    """Show the exact tool schemas the model will be given."""
    assembly = load_and_assemble(recipe, site, overrides)
    schemas = assembly.toolbox.schemas(include_tools=assembly.recipe.agent.evidence == "seek")
    if as_json:
        click.echo(json.dumps(schemas, indent=2))
        return
    for s in schemas:
        params = s["parameters"].get("properties", {})
        required = set(s["parameters"].get("required", []))
        args = ", ".join(f"{k}{'' if k in required else '?'}: {v.get('type', 'any')}" for k, v in params.items())
        click.echo(f"{s['name']}({args})")
        first = (s.get("description") or "").strip().splitlines()
        if first:
            click.echo(f"    {first[0]}")


@click.command()
@recipe_arg
@click.argument("tool_name", metavar="TOOL")
@click.option("--task", "qid", required=True, help="The qid of the task whose episode the call runs in.")
@click.option("--args", "args_json", default="{}", show_default=True, help="The tool's arguments as JSON.")
@site_opt
@set_opt
def call(recipe, tool_name, qid, args_json, site, overrides):
    """Run one tool call exactly as the agent would inside a task's episode, and print the observation."""
    import asyncio

    from clinseek.engine import make_runner
    from clinseek.errors import UserError
    from clinseek.hosts.base import ToolCall

    try:
        arguments = json.loads(args_json)
    except json.JSONDecodeError as exc:
        raise UserError(f"--args is not valid JSON: {exc.msg} at column {exc.colno}",
                        hint="quote the JSON for your shell, e.g. --args '{\"query\": \"SELECT 1\"}'") from None
    if not isinstance(arguments, dict):
        raise UserError("--args must be a JSON object, e.g. '{\"table\": \"labevents\"}'")
    assembly = load_and_assemble(recipe, site, overrides)
    names = set(assembly.toolbox.specs)
    if tool_name not in names:
        from clinseek.recipe.suggest import did_you_mean

        raise UserError(f"unknown tool {tool_name!r}{did_you_mean(tool_name, sorted(names))}",
                        hint=f"tools of this recipe: {', '.join(sorted(names))}")
    task = next((t for t in assembly.source.iter_tasks() if t.qid == qid), None)
    if task is None:
        raise UserError(f"no task with qid {qid!r} in the recipe's tasks")
    assembly.open()
    try:
        runner = make_runner(assembly, task, 0, evidence="")
        runner.use_tools = True

        async def go():
            ts = assembly.toolbox.specs[tool_name][1]
            await asyncio.to_thread(ts.bind, runner.episodes[ts.name])
            try:
                return await runner._one_call("call_1", ToolCall(id="call_1", name=tool_name, arguments=arguments))
            finally:
                await asyncio.to_thread(ts.unbind, runner.episodes[ts.name])

        observation = asyncio.run(go())
    finally:
        assembly.close()
    click.echo(observation["content"])
