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
@click.option("--check-host", is_flag=True,
              help="Also check that the model server answers (the pre-flight request `apply` makes).")
def validate(recipe, site, overrides, check_host):
    """Check a recipe: schema, plugin names, each toolset's and host's config, what each toolset's open() would
    need (files exist, a PostgreSQL server answers), and that the prompt templates render against the first
    task. Prints every problem at once, one per line with file:line:col; exit 2 when there is any."""
    from clinseek.engine import assemble
    from clinseek.errors import UserError, UserErrors
    from clinseek.recipe import load_recipe
    from clinseek.recipe.errors import sort_problems

    loaded = load_recipe(recipe, site=site, overrides=overrides, collect=True)
    problems: list[str] = []
    assembly = assemble(loaded, preflight=True, problems=problems)
    if assembly is not None and None not in (assembly.source, assembly.prompts, assembly.toolbox):
        _check_templates(assembly, recipe, problems)
        if not problems:
            _check_patients(assembly, problems)
    host_line = ""
    if check_host and assembly is not None and assembly.host is not None:
        try:
            host_line = _host_check_line(assembly)
        except UserError as exc:
            problems.append(exc.render())
    if problems:
        raise UserErrors(sort_problems(problems))
    names = [s["name"] for s in assembly.toolbox.schemas(assembly.recipe.agent.evidence == "seek")]
    click.echo(f"{recipe}: ok ({assembly.recipe.host.provider} host; tools: {', '.join(names)}){host_line}")


def _host_check_line(assembly, again: str | None = None, before_run: bool = False) -> str:
    """Run the host pre-flight (UserError when the server cannot be reached); print what a live server said."""
    from clinseek.engine import check_host

    check = check_host(assembly, again=again, before_run=before_run)
    if check is None:
        return "; host: nothing to check (it runs in this process)"
    for note in check.notes:
        click.echo(f"warning: {note}", err=True)
    return f"; host reachable at {check.url}" + (f" (HTTP {check.status})" if check.status else "")


def _check_templates(assembly, recipe: str, problems: list[str]) -> None:
    """Render the prompts for the first task (StrictUndefined: a misspelt variable is an error). Curated mode
    without a task `input` opens the toolsets for the curator, only when nothing else is wrong."""
    from clinseek.engine import curated_evidence, no_tasks_error, render_at, select_tasks
    from clinseek.errors import UserError
    from clinseek.prompts import prompt_context

    loaded, spec = assembly.loaded, assembly.recipe
    try:
        tasks = select_tasks(assembly, limit=1)
    except UserError as exc:  # the task file: missing, or a malformed line with on_error: fail
        problems.append(render_at(exc, loaded.where(("tasks", "path" if spec.tasks.path else "source"))))
        return
    if not tasks:
        problems.append(no_tasks_error(assembly).render())
        return
    task = tasks[0]
    seek = spec.agent.evidence == "seek"
    try:
        evidence = None if seek else (task.input or "")
        if not seek and not task.input and not problems:
            assembly.open()
            try:
                evidence = curated_evidence(assembly, task)
            finally:
                assembly.close()
        schemas = assembly.toolbox.schemas(include_tools=seek)
        assembly.prompts.render(prompt_context(task, schemas, spec, evidence=evidence, mode=spec.agent.evidence))
    except UserError as exc:
        problems.append(render_at(exc, loaded.where(("prompts",))))


def _check_patients(assembly, problems: list[str]) -> None:
    """Every selected task's patient and admission exist in the data (toolsets that keep a roster, such as ehr,
    are opened for this; the others are not)."""
    from clinseek.engine import screen_patients, select_tasks
    from clinseek.errors import UserError
    from clinseek.toolsets import Toolset

    checkers = [ts for ts in assembly.toolsets if type(ts).missing_patients is not Toolset.missing_patients]
    if not checkers:
        return
    try:
        tasks = select_tasks(assembly)
        for ts in checkers:
            ts.open()
        screen_patients(assembly, tasks, warn=lambda text: click.echo(f"warning: {text}", err=True))
    except UserError as exc:
        problems.append(exc.render())
    finally:
        for ts in checkers:
            try:
                ts.close()
            except Exception:  # noqa: BLE001 - closing must not hide the check's result
                pass


def _progress(result, done, total):
    from clinseek.redact import redact_text

    status = result["status"]
    extra = f" ({redact_text(str(result['reason']))})" if result.get("reason") and status != "completed" else ""
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
@click.option("--retry-errors", is_flag=True,
              help="With --resume: also run again the episodes whose result is `error` (a new attempt is "
                   "appended; the old lines stay).")
@click.option("--quiet", is_flag=True, help="No per-episode progress lines.")
def apply(recipe, site, overrides, limit, workers, out, resume, retry_errors, quiet):
    """Assemble the agent a recipe describes and run it over its tasks."""
    from clinseek.engine import assemble, no_tasks_error, run_assembly, select_tasks
    from clinseek.errors import ClinseekError, UserError
    from clinseek.runs import MANIFEST, RunDir, failure_reasons

    if retry_errors and not resume:
        raise UserError("--retry-errors needs --resume RUN_DIR", hint="retrying is for the errored episodes of "
                        "an earlier run: clinseek apply RECIPE --resume RUN_DIR --retry-errors")
    loaded = load(recipe, site, overrides)
    assembly = assemble(loaded)
    assembly.context.workers = workers  # hosts size themselves by it (llamacpp: parallel slots) at pre-flight
    tasks = select_tasks(assembly, limit=limit)
    if not tasks:
        raise no_tasks_error(assembly)
    report = getattr(assembly.source, "report", None)
    if report is not None and getattr(report, "malformed", 0):
        click.echo(f"tasks: {report.summary()}; running {len(tasks)}", err=True)

    def warn(text):
        click.echo(f"warning: {text}", err=True)

    if getattr(assembly.host.config, "preflight", True):  # a server that is down fails here, before any write
        _host_check_line(assembly, before_run=True, again=_resume_command(
            loaded, recipe, site, overrides, limit, workers, resume, retry_errors) if resume else None)
    if resume:
        manifest_path = Path(resume) / MANIFEST
        previous = json.loads(manifest_path.read_text(encoding="utf-8")).get("recipe_sha256") \
            if manifest_path.exists() else None
        if previous and previous != loaded.sha256:  # checked before the run is opened (and repaired)
            raise UserError(f"--resume {resume}: that run was made from a different recipe (sha256 "
                            f"{previous[:12]} vs {loaded.sha256[:12]})",
                            hint="resume with the same recipe, site and --set values, or start a new run")
        run = RunDir.open_existing(Path(resume), warn=warn)
    else:
        parent = Path(out) if out else loaded.resolve_path(loaded.recipe.output.dir) \
            if not Path(loaded.recipe.output.dir).is_absolute() else Path(loaded.recipe.output.dir)
        if not out and loaded.recipe.output.dir == "runs":
            parent = Path("runs")  # the default lands in the working folder, not beside the recipe
        run = RunDir.create(parent, loaded.recipe.name, warn=warn)
    command = _resume_command(loaded, recipe, site, overrides, limit, workers, run.path, retry_errors)
    try:
        click.echo(f"run directory: {run.path}", err=True)
        try:
            counts = run_assembly(assembly, tasks, run, workers=workers, progress=None if quiet else _progress,
                                  retry_errors=retry_errors, resume_command=command)
        except KeyboardInterrupt:
            _interrupted(run, tasks, loaded.recipe.runs_per_task, command)
        except ClinseekError as exc:
            if getattr(exc, "aborts_run", False):
                _stopped(run, exc, command)
            raise
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        click.echo(f"episodes: {summary or 'none'}")
        _finish_run(assembly, run)
        if counts.get("error"):
            reasons = failure_reasons(run.results())
            top = "; ".join(f"{n} x {r}" for r, n in list(reasons.items())[:3])
            retry = command if retry_errors else f"{command} --retry-errors"
            click.echo(f"{counts['error']} episode(s) ended in error ({top}); see {run.path / 'events.log'} and "
                       f"results.jsonl\nonce the cause is fixed, run them again with: {retry}", err=True)
            sys.exit(1)
    finally:
        run.close()


def _resume_command(loaded, recipe, site, overrides, limit, workers, run_path, retry_errors) -> str:
    """The exact command that finishes this run (what selects tasks and the recipe's hash must match);
    secret-looking --set values are masked, as this line goes into events.log and the manifest."""
    import shlex

    from clinseek.redact import SECRET_KEY
    from clinseek.recipe.load import redact_line

    parts = ["clinseek", "apply", str(recipe)]
    if site:
        parts += ["--site", str(site)]
    for item in overrides:
        key, eq, value = item.partition("=")
        parts += ["--set", f"{key}=***" if eq and SECRET_KEY.search(key) else item]
    if limit:
        parts += ["--limit", str(limit)]
    if workers != 4:
        parts += ["--workers", str(workers)]
    parts += ["--resume", str(run_path)] + (["--retry-errors"] if retry_errors else [])
    return redact_line(shlex.join(parts), loaded.secrets)


def _stopped(run, exc, command) -> None:
    """A run-stopping host error (the server cannot be reached, or refused the request): finished episodes are
    kept; say so, and how to finish the run, in the error and in events.log."""
    from clinseek.redact import redact_error

    done = len(run.results())
    exc.hint = (f"{exc.hint}; " if exc.hint else "") + (f"{done} finished episode{'s' * (done != 1)} kept; once "
                                                        f"fixed, finish the run with: {command}")
    redact_error(exc)
    run.event(f"run stopped: {exc.render()}")


def _interrupted(run, tasks, runs_per_task, command) -> None:
    """Ctrl-C: say how far the run got and how to finish it, here and in events.log; exit 130."""
    if not run.path.exists():  # stopped while opening a new run: it was removed, nothing to resume
        click.echo("interrupted before any episode started; no run directory was kept", err=True)
        sys.exit(130)
    results = run.effective_results()
    keys = [(t.qid, i) for t in tasks for i in range(runs_per_task)]
    done = sum(1 for k in keys if k in results)
    errors = sum(1 for k in keys if k in results and results[k].get("status") == "error")
    text = (f"interrupted: {done} of {len(keys)} episodes done" + (f" ({errors} ended in error)" if errors else "")
            + f"; finish the run with: {command}")
    run.event(text)
    click.echo(text, err=True)
    sys.exit(130)


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
    task, qids = None, []
    for t in assembly.source.iter_tasks():
        if t.qid == qid:
            task = t
            break
        qids.append(t.qid)
    if task is None:
        from clinseek.recipe.suggest import did_you_mean

        raise UserError(f"no task with qid {qid!r} in the recipe's tasks{did_you_mean(qid, qids)}",
                        hint=f"`clinseek tasks {recipe}` lists the qids ({len(qids)} here)")
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
