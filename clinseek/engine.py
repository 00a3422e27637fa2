"""Assembling a recipe into a runnable agent, and running it over the tasks.

recipe -> plugin names resolved -> configs validated -> toolsets opened once -> tasks streamed -> episodes run
concurrently (`workers`) -> results and trajectories appended to the run directory.
"""
from __future__ import annotations

import asyncio
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.errors import UserError, UserErrors
from clinseek.hosts.base import Host, HostCheck
from clinseek.paths import default_cache_dir
from clinseek.plugins import Registry, get_registry
from clinseek.prompts import PromptSet, prompt_context
from clinseek.recipe.errors import format_validation_error, sort_problems
from clinseek.recipe.load import PLACEHOLDER, LoadedRecipe, redact_line
from clinseek.redact import add_secrets, redact_text
from clinseek.runs import MANIFEST, RunDir, environment_facts, git_revision, utcnow
from clinseek.tasks import Task, TaskSource
from clinseek.toolsets import Toolset


@dataclass
class RunContext:
    """What plugins may know about the run they are part of."""

    recipe_dir: Path
    cache_dir: Path = field(default_factory=default_cache_dir)
    run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    sink: Callable[[str], None] | None = None
    info_sink: Callable[[str], None] | None = None
    workers: int | None = None  # episodes at once (`--workers`), set before the host's pre-flight

    def warn(self, text: str) -> None:
        """Something the user should look at; kept in the run's events.log."""
        text = redact_text(text)
        self.warnings.append(text)
        (self.sink or (lambda t: print(f"warning: {t}", file=sys.stderr)))(text)

    def info(self, text: str) -> None:
        """Progress worth a line (building an index, loading a model); not a problem."""
        text = redact_text(text)
        (self.info_sink or (lambda t: print(t, file=sys.stderr)))(text)


@dataclass
class Assembly:
    loaded: LoadedRecipe
    host: Host
    toolsets: list[Toolset]
    toolbox: ToolBox
    prompts: PromptSet
    source: TaskSource
    context: RunContext
    opened: bool = False
    scorers: list = field(default_factory=list)   # output.scorers, looked up like any plugin's
    tool_positions: list[int] = field(default_factory=list)  # each toolset's index in recipe.tools

    @property
    def recipe(self):
        return self.loaded.recipe

    def open(self) -> None:
        if self.opened:
            return
        for ts in self.toolsets:
            try:
                ts.open()
            except UserError:
                self.close()
                raise
            except Exception as exc:  # noqa: BLE001 - a plugin's bug or bad data: one message, not a traceback
                self.close()
                raise UserError(f"toolset {ts.name!r} failed to open: {type(exc).__name__}: {exc}",
                                where=self.loaded.where(("tools",)),
                                hint="check the toolset's `with:` settings; a plugin author raises UserError "
                                     "from open() for problems the user can fix (docs/plugins.md)") from exc
        self.opened = True

    def close(self) -> None:
        for ts in self.toolsets:
            try:
                ts.close()
            except Exception:  # noqa: BLE001 - closing must not mask the run's outcome
                pass
        self.opened = False


def assemble(loaded: LoadedRecipe, registry: Registry | None = None, context: RunContext | None = None, *,
             preflight: bool = False, problems: list[str] | None = None) -> Assembly | None:
    """Resolve every name and validate every config; report all problems at once.

    The problems `load_recipe(collect=True)` found come first; parts they are about are not checked again.
    `preflight`: also run each toolset's cheap checks (files exist, servers answer) without opening it.
    `problems`: collect into this list and return what could be assembled (None without a recipe) instead of
    raising UserErrors.
    """
    registry = registry or get_registry()
    recipe = loaded.recipe
    add_secrets(loaded.secrets)  # from here on, redacted from everything the run writes or prints
    context = context or RunContext(recipe_dir=loaded.dir)
    found: list[str] = list(registry.conflicts) + list(loaded.problems)

    def where(path: tuple) -> str | None:
        return loaded.where(path)

    def validated(model: Any, data: dict, prefix: tuple) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            found.extend(redact_line(line, loaded.secrets)
                         for line in format_validation_error(exc, prefix=prefix, where=where, model=model,
                                                             skip=loaded.has_problem))
            return None

    def finish(assembly: Assembly | None) -> Assembly | None:
        if problems is not None:
            problems.extend(sort_problems(found))
            return assembly
        if found:
            raise UserErrors(sort_problems(found))
        return assembly

    if recipe is None:
        return finish(None)

    host = None
    if recipe.host.provider != PLACEHOLDER:
        try:
            host_cls = registry.get("hosts", recipe.host.provider, where=where(("host", "provider")))
            host_cfg = validated(host_cls.Config, recipe.host.model_dump(), ("host",))
            # With a value missing (a failed ${site:..}), the host would be judged on its default instead.
            if host_cfg is not None and not loaded.has_problem(("host",)):
                host = host_cls(host_cfg, context)
        except UserError as exc:
            found.append(exc.render())

    toolsets: list[Toolset] = []
    positions: list[int] = []  # each toolset's index in recipe.tools
    checks: list[tuple[int, Toolset]] = []  # (index, toolset) to preflight
    for i, use in enumerate(recipe.tools):
        if use.use == PLACEHOLDER:
            continue
        try:
            ts_cls = registry.get("toolsets", use.use, where=where(("tools", i, "use")))
        except UserError as exc:
            found.append(exc.render())
            continue
        cfg = validated(ts_cls.Config, use.with_, ("tools", i, "with"))
        try:
            if cfg is not None:
                toolsets.append(ts_cls(cfg, context))
                positions.append(i)
                checks.append((i, toolsets[-1]))
            elif preflight and (rest := _without_bad_keys(ts_cls.Config, use.with_)) is not None:
                checks.append((i, ts_cls(rest, context)))  # preflight the valid keys too, in the same round
        except UserError as exc:
            found.append(exc.render())

    if recipe.agent.max_cost_usd is not None and host is not None and getattr(host.config, "price", None) is None:
        found.append(f"{where(('agent', 'max_cost_usd'))}: agent.max_cost_usd: a cost budget needs host.price "
                     f"(USD per million input/output tokens); without it the budget could not be enforced")

    source = None
    try:
        src_cls = registry.get("task_sources", recipe.tasks.source, where=where(("tasks", "source")))
        if not loaded.has_problem(("tasks",)):  # e.g. a misspelt `path`: "needs tasks.path" would only repeat it
            path = loaded.resolve_path(recipe.tasks.path) if recipe.tasks.path else None
            source = src_cls({**recipe.tasks.with_, "path": path, "on_error": recipe.tasks.on_error}, context)
    except UserError as exc:
        found.append(render_at(exc, where(("tasks", "path" if recipe.tasks.path else "source"))))

    prompts = None
    if not loaded.has_problem(("prompts",)):
        try:
            prompts = PromptSet(loaded.dir, recipe.prompts.system, recipe.prompts.user, mode=recipe.agent.evidence,
                                where={"system": where(("prompts", "system")), "user": where(("prompts", "user"))})
        except UserError as exc:
            found.append(exc.render())

    if recipe.output.export or recipe.output.mode == "trajectories":
        from clinseek.exporters.options import ExportOptions

        options = validated(ExportOptions, recipe.output.export, ("output", "export"))
        formats = options.formats if options else recipe.output.export.get("formats") or []
        for i, fmt in enumerate(formats if isinstance(formats, list) else []):
            try:
                registry.get("exporters", fmt, where=where(("output", "export", "formats", i)))
            except UserError as exc:
                found.append(exc.render())

    scorers = []
    for i, name in enumerate(recipe.output.scorers):
        try:
            scorers.append(registry.get("scorers", name, where=where(("output", "scorers", i)))())
        except UserError as exc:
            found.append(exc.render())

    if preflight:
        for i, ts in checks:
            if loaded.has_problem(("tools", i)):
                continue  # a value was left out: preflight would check its default instead
            found.extend(redact_text(line) for line in _preflight(ts, i, where))

    toolbox = None
    try:
        toolbox = ToolBox.build(toolsets)
    except Exception as exc:  # noqa: BLE001
        found.append(f"{where(('tools',))}: {exc}")
    if toolbox is not None:
        for key, names in recipe.agent.tools_by_task.items():
            unknown = [n for n in names if n not in toolbox.specs and n != "finish"]
            if unknown:
                found.append(UserError(f"agent.tools_by_task.{key}: no tool named {', '.join(map(repr, unknown))}",
                                       where=where(("agent", "tools_by_task", key)),
                                       hint="the recipe's tools are: " + ", ".join(toolbox.specs)).render())

    assembly = Assembly(loaded=loaded, host=host, toolsets=toolsets, toolbox=toolbox, prompts=prompts,
                        source=source, context=context, scorers=scorers, tool_positions=positions)
    if host is not None:
        try:
            check_governance(assembly)
        except UserError as exc:
            found.append(exc.render())
    return finish(assembly)


def render_at(exc: UserError, where: str | None) -> str:
    """The error's message, placed at `where` (a recipe position) when it names no position of its own."""
    if exc.where or not where or isinstance(exc, UserErrors):
        return exc.render()
    return UserError(exc.message, where=where, hint=exc.hint).render()


def _without_bad_keys(model: Any, data: dict) -> Any:
    """The config validated without the keys that failed (their defaults apply), or None."""
    try:
        model.model_validate(data)
    except ValidationError as exc:
        bad = {e["loc"][0] for e in exc.errors() if e.get("loc")}
        try:
            return model.model_validate({k: v for k, v in data.items() if k not in bad})
        except ValidationError:
            return None
    return None


def _preflight(ts: Toolset, index: int, where: Callable[[tuple], str | None]) -> list[str]:
    """A toolset's preflight() problems as `file:line:col: tools[i].with.key: message` lines."""
    label = f"tools[{index}]"
    try:
        items = ts.preflight()
    except UserError as exc:
        return [f"{where(('tools', index, 'use'))}: {label} ({ts.name}): {exc.render()}"]
    except Exception as exc:  # noqa: BLE001 - a plugin's check failing is one problem, not a traceback
        return [f"{where(('tools', index, 'use'))}: {label} ({ts.name}): preflight check failed: "
                f"{type(exc).__name__}: {exc}"]
    lines = []
    for item in items or []:
        key, message = item if isinstance(item, tuple) else (None, str(item))
        if key:
            parts = tuple(int(k) if k.isdigit() else k for k in str(key).split("."))
            lines.append(f"{where(('tools', index, 'with') + parts)}: {label}.with.{key}: {message}")
        else:
            lines.append(f"{where(('tools', index, 'use'))}: {label} ({ts.name}): {message}")
    return lines


def check_governance(assembly: Assembly) -> None:
    """Invariant 6: patient data goes to no host and no toolset server outside the site unless the recipe opts
    in; and the site file's values and secrets never go into a prompt (which the host receives)."""
    from clinseek.hosts.base import address_is_local, site_host_problem
    from clinseek.redact import redact_text
    from clinseek.toolsets import Endpoint

    recipe, loaded = assembly.recipe, assembly.loaded
    gov = recipe.governance
    problems: list[str] = []
    if assembly.prompts is not None:
        try:
            assembly.prompts.protect(loaded.site, loaded.secrets, getattr(loaded, "site_path", None))
        except UserError as exc:
            problems.append(exc.render())

    # The site's own hosts: governance.site_hosts, and `site_hosts:` in the site file (where a site keeps them).
    site_path = getattr(loaded, "site_path", None)
    site_where = str(site_path) if site_path else "the site file"
    listed = [(loaded.where(("governance", "site_hosts", i)), f"governance.site_hosts[{i}]", e)
              for i, e in enumerate(gov.site_hosts)]
    from_site = loaded.site.get("site_hosts") if isinstance(loaded.site, dict) else None
    if from_site is not None and not isinstance(from_site, list):
        problems.append(f"{site_where}: site_hosts: must be a list of host names, addresses or networks")
    else:
        listed += [(site_where, f"site_hosts[{i}]", e) for i, e in enumerate(from_site or [])]
    site_hosts = []
    for where, label, entry in listed:
        problem = site_host_problem(entry)
        if problem:
            problems.append(UserError(f"{label}: {problem}", where=where,
                                      hint="list only the site's own servers; a link-local or .local server "
                                           "needs site_local: true on the host or tool that uses it").render())
        else:
            site_hosts.append(entry)
    hosts_hint = ("or list the server in the site file's site_hosts (or governance.site_hosts), or set "
                  "governance.allow_external_hosts: true if your data agreement allows it")

    host = assembly.host
    base_url = getattr(host.config, "base_url", None)
    inside = host.site_local or (getattr(host.config, "site_local", None) is None and bool(base_url)
                                 and address_is_local(base_url, site_hosts))
    readers = [ts.name for ts in assembly.toolsets if ts.patient_data]
    if recipe.agent.evidence == "curated":
        readers.append("the curated evidence package")
    if readers and not inside and not gov.allow_external_hosts:
        desc = host.describe()
        target = redact_text(str(desc.get("base_url") or base_url or desc.get("provider")))
        problems.append(UserError(
            f"host {recipe.host.provider!r} ({target}) is outside the site, and {', '.join(readers)} would send it "
            f"patient data", where=loaded.where(("host",)),
            hint="use a host inside the site (loopback or private address, or host.site_local: true for one that "
                 f"is), {hosts_hint}").render())

    # Toolset servers: the same rule for every endpoint that receives patient-derived data.
    positions = getattr(assembly, "tool_positions", None) or [
        next((i for i, t in enumerate(recipe.tools) if t.use == ts.name), None) for ts in assembly.toolsets]
    for ts, index in zip(assembly.toolsets, positions):
        label = f"tools[{index}]" if index is not None else ts.name
        try:
            endpoints = [e if isinstance(e, Endpoint) else Endpoint(*e) for e in ts.remote_endpoints() or []]
        except Exception as exc:  # noqa: BLE001 - a plugin failing to say is refused, not a traceback
            problems.append(f"{loaded.where(('tools', index) if index is not None else ('tools',))}: {label} "
                            f"({ts.name}): could not list its servers (remote_endpoints): {type(exc).__name__}: "
                            f"{exc}")
            continue
        for ep in endpoints:
            if not ep.carries_patient_data or gov.allow_external_hosts:
                continue
            if ep.site_local if ep.site_local is not None else address_is_local(ep.url, site_hosts):
                continue
            key = tuple(int(k) if k.isdigit() else k for k in str(ep.key).split("."))
            where = loaded.where(("tools", index, "with") + key) if index is not None else None
            problems.append(UserError(
                f"{label}.with.{ep.key}: the {ts.name} server {redact_text(ep.url)} is outside the site, and the "
                f"{ts.name} tools would send it patient-derived data (what the model asks them, written from the "
                f"patient's record)", where=where,
                hint=f"use a server inside the site (loopback or private address, or site_local: true in this "
                     f"tool's with: block for one that is), {hosts_hint}").render())
    if problems:
        raise UserErrors(problems)


def check_host(assembly: Assembly, *, again: str | None = None, before_run: bool = True) -> HostCheck | None:
    """Pre-flight: is the model server up? Raises UserError (exit 2) naming the address when no connection can
    be opened; a live server's error answers (401, 404, a model it does not list) come back in `notes`.
    `again`: the command to run once it is up. None for hosts with nothing to check (rules, in-process)."""
    check = assembly.host.preflight()
    if check is None or check.reachable:
        return check
    again = again or "the same command again" + (" (nothing was written)" if before_run else "")
    raise UserError(f"cannot reach the model server at {check.url}: {check.problem}",
                    where=assembly.loaded.where(("host", "base_url")),
                    hint=f"{check.hint}; once it is up, run {again}"
                         + (" (host.preflight: false skips this check)" if before_run else ""))


def select_tasks(assembly: Assembly, limit: int | None = None) -> list[Task]:
    spec = assembly.recipe.tasks
    tasks = list(assembly.source.iter_tasks())
    if spec.filter:
        f = spec.filter
        tasks = [t for t in tasks if (f.task is None or t.task in f.task)
                 and (f.task_type is None or t.task_type in f.task_type)
                 and (f.qid is None or t.qid in f.qid)]
    if spec.sample is not None and spec.sample < len(tasks):
        rng = random.Random(spec.seed)
        keep = set(rng.sample(range(len(tasks)), spec.sample))
        tasks = [t for i, t in enumerate(tasks) if i in keep]
    cap = min(x for x in (spec.limit, limit, len(tasks)) if x is not None)
    return tasks[:cap]


def no_tasks_error(assembly: Any) -> UserError:
    """Why a recipe selects no task: the file gave none (with its first bad rows), or the selection removed all."""
    report = getattr(assembly.source, "report", None)
    where = assembly.loaded.where(("tasks", "path" if assembly.recipe.tasks.path else "source")) \
        if hasattr(assembly, "loaded") else None
    if report is not None and report.loaded == 0:
        if report.malformed:
            first = "\n".join("  " + p.splitlines()[0] for p in report.problems[:3])
            return UserError(f"the task file gave no task: all {report.malformed} row(s) are malformed; the first:"
                             f"\n{first}", where=where,
                             hint="fix those rows (ClinSeek-Bench rows need qid, subject_id, prediction_time and "
                                  "question; docs/clinseek-bench.md), or point tasks.path at the right file")
        return UserError("the task file holds no task rows", where=where,
                         hint="check tasks.path: JSON Lines (one object per line) or one JSON array of objects")
    return UserError("the recipe's tasks select no task: there is nothing to run", where=where,
                     hint="check tasks.filter, tasks.sample and --limit against the file's tasks")


def screen_patients(assembly: Assembly, tasks: list[Task], warn: Callable[[str], None] | None = None
                    ) -> tuple[list[Task], dict[str, str]]:
    """Ask every open toolset which tasks name a patient or admission its data lacks; per
    `tasks.missing_patient`, refuse the run naming the first ones (fail) or drop them with a warning (skip).
    Returns the tasks to run and qid -> why for the missing ones."""
    views = [t.view() for t in tasks]
    missing: dict[str, str] = {}
    for ts in assembly.toolsets:
        for qid, why in (ts.missing_patients(views) or {}).items():
            missing.setdefault(qid, why)
    if not missing:
        return tasks, {}
    first = "; ".join(f"{qid}: {why}" for qid, why in list(missing.items())[:3])
    more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
    text = f"{len(missing)} of {len(tasks)} task(s) name a patient or admission the database does not have ({first}{more})"
    if assembly.recipe.tasks.missing_patient == "fail":
        raise UserError(text, where=assembly.loaded.where(("tasks",)),
                        hint="check that tasks and database belong together (the right file, the right database), "
                             "or set tasks.missing_patient: skip to run the others")
    (warn or _stderr)(f"{text}: skipped (tasks.missing_patient: skip)")
    return [t for t in tasks if t.qid not in missing], missing


def _stderr(text: str) -> None:
    print(f"warning: {text}", file=sys.stderr)


def curated_evidence(assembly: Assembly, task: Task) -> str:
    """The evidence package of curated mode: the task's own `input`, or the ehr toolset's curator
    (`agent.curated.source` chooses; `auto` prefers the task's)."""
    spec = assembly.recipe.agent.curated
    if spec.source != "curator" and task.input:
        return task.input
    if spec.source == "task":
        raise UserError(f"task {task.qid} has no `input` field, and agent.curated.source is 'task'",
                        hint="use agent.curated.source: auto (the curator fills in) or tasks that carry input")
    ehr = next((ts for ts in assembly.toolsets if ts.can_curate), None)
    if ehr is None:
        raise UserError(f"task {task.qid} has no `input` and no toolset can curate evidence",
                        hint="add the ehr toolset to tools, or use tasks that carry an input field")
    from clinseek.toolsets import Binding

    return ehr.curate(Binding.from_task(task), window_hours=spec.window_hours, max_events=spec.max_events)


def make_runner(assembly: Assembly, task: Task, run_index: int, log: Callable[[str], None] | None = None,
                evidence: str | None = None) -> EpisodeRunner:
    recipe = assembly.recipe
    seek = recipe.agent.evidence == "seek"
    offered = recipe.agent.tools_for(task)
    schemas = assembly.toolbox.schemas(include_tools=seek, only=offered)
    if not seek and evidence is None:
        evidence = curated_evidence(assembly, task)
    system, user = assembly.prompts.render(prompt_context(task, schemas, recipe, evidence=evidence,
                                                          mode=recipe.agent.evidence))
    return EpisodeRunner(task=task, run_index=run_index, host=assembly.host, toolbox=assembly.toolbox,
                         limits=AgentLimits.from_spec(recipe.agent), system=system, user=user, use_tools=seek,
                         price=getattr(assembly.host.config, "price", None), log=log, offered=offered)


def build_manifest(assembly: Assembly, *, started: str, ended: str | None = None,
                   counts: dict[str, int] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    from clinseek import __version__

    registry = get_registry()
    plugins = {name: {"distribution": p.distribution, "version": p.version, "error": p.error}
               for name, p in registry.plugins.items()}
    toolsets = {}
    for ts in assembly.toolsets:
        try:
            toolsets[ts.name] = ts.manifest() if assembly.opened else {}
        except Exception as exc:  # noqa: BLE001
            toolsets[ts.name] = {"error": str(exc)}
    return {
        "recipe": assembly.loaded.redacted(),
        "recipe_path": str(assembly.loaded.path),
        "recipe_sha256": assembly.loaded.sha256,
        # recipe_source_sha256 (the shared recipe before --set and site values), site {path, sha256}, overrides
        **assembly.loaded.provenance(),
        "git_revision": git_revision(assembly.loaded.dir),
        "clinseek_version": __version__,
        "plugins": plugins,
        "host": assembly.host.describe(),
        "toolsets": toolsets,
        "environment": environment_facts(),
        "started": started,
        "ended": ended,
        "counts": counts or {},
        **(extra or {}),
    }


async def _run_all(assembly: Assembly, pending: list[tuple[Task, int]], run: RunDir, workers: int,
                   progress: Callable[[dict[str, Any], int, int], None] | None) -> None:
    loop = asyncio.get_running_loop()
    # Sync tools run in threads: give every concurrent episode one, so tools never queue behind each other.
    loop.set_default_executor(ThreadPoolExecutor(max_workers=max(8, workers * 2)))
    sem = asyncio.Semaphore(workers)
    host_desc = assembly.host.describe()
    sha = assembly.loaded.sha256
    total = len(pending)
    done = 0

    async def one(task: Task, run_index: int) -> None:
        nonlocal done
        async with sem:
            runner = make_runner(assembly, task, run_index, log=run.event)
            result, trajectory = await runner.run()
        trajectory.update({"host": host_desc, "recipe_sha256": sha})
        await asyncio.to_thread(run.record_episode, result, trajectory)
        done += 1
        if progress:
            progress(result, done, total)

    try:
        # A TaskGroup cancels the episodes in flight when one raises a run-stopping error (finished ones are kept).
        async with asyncio.TaskGroup() as group:
            for t, i in pending:
                group.create_task(one(t, i))
    except BaseExceptionGroup as eg:
        raise eg.exceptions[0] from None
    finally:
        await assembly.host.aclose()


def plan_episodes(assembly: Assembly, tasks: list[Task], run: RunDir, *,
                  retry_errors: bool = False) -> tuple[list[tuple[Task, int]], dict[str, int]]:
    """The (task, run_index) pairs to run: those without a result; with retry_errors, those whose effective
    result is `error`; in trajectory mode, those whose trajectory is missing. Returns (pending, why counts)."""
    recipe = assembly.recipe
    results = run.effective_results()
    trajectories = run.trajectory_keys() if recipe.output.mode == "trajectories" else None
    pending: list[tuple[Task, int]] = []
    why = {"new": 0, "error": 0, "no_trajectory": 0, "done": 0}
    for t in tasks:
        for i in range(recipe.runs_per_task):
            r = results.get((t.qid, i))
            reason = "new" if r is None else "error" if retry_errors and r.get("status") == "error" else \
                "no_trajectory" if trajectories is not None and (t.qid, i) not in trajectories else None
            why[reason or "done"] += 1
            if reason:
                pending.append((t, i))
    return pending, why


def run_assembly(assembly: Assembly, tasks: list[Task], run: RunDir, *, workers: int = 4,
                 progress: Callable[[dict[str, Any], int, int], None] | None = None,
                 retry_errors: bool = False, resume_command: str | None = None) -> dict[str, int]:
    """Run every (task, run_index) the run directory still needs (see plan_episodes); returns counts per status
    of the effective results. `resume_command` (how to finish this run) goes into the manifest."""
    pending, why = plan_episodes(assembly, tasks, run, retry_errors=retry_errors)
    previous = run.manifest() if (run.path / MANIFEST).exists() else {}
    extra = {"resumed": bool(previous), "task_count": len(tasks), "resume_command": resume_command}
    report = getattr(assembly.source, "report", None)
    if report is not None and hasattr(report, "as_dict"):
        extra["task_file"] = report.as_dict()   # rows read, malformed rows skipped (first reasons), inferred tasks
    started = previous.get("started") or utcnow()
    assembly.context.run_dir = run.path
    assembly.context.workers = workers
    assembly.context.sink = lambda text: (run.event(f"warning: {text}"), print(f"warning: {text}", file=sys.stderr))
    assembly.context.info_sink = lambda text: (run.event(text), print(text, file=sys.stderr))
    try:
        assembly.open()
        tasks, missing = screen_patients(assembly, tasks, warn=assembly.context.sink)
        if missing:
            extra["tasks_missing_patient"] = len(missing)
            extra["task_count"] = len(tasks)
            pending = [(t, i) for t, i in pending if t.qid not in missing]
    except BaseException:
        assembly.close()
        run.discard_if_unused()  # a failed start leaves no empty run directory behind
        raise
    try:
        run.write_manifest(build_manifest(assembly, started=started, extra=extra))
        again = [f"{why['error']} that ended in error (--retry-errors)" if why["error"] else "",
                 f"{why['no_trajectory']} whose trajectory is missing" if why["no_trajectory"] else ""]
        again = [a for a in again if a]
        run.event(f"running {len(pending)} episodes ({why['done']} already done"
                  + (f"; again: {', '.join(again)}" if again else "") + f") with {workers} workers")
        asyncio.run(_run_all(assembly, pending, run, workers, progress))
    except KeyboardInterrupt:
        extra["interrupted"] = True
        raise
    finally:
        counts: dict[str, int] = {}
        for r in run.results():
            status = str(r.get("status") or "unknown")
            counts[status] = counts.get(status, 0) + 1
        manifest = build_manifest(assembly, started=started, ended=utcnow(), counts=counts,
                                  extra={**extra, "cost_usd": _total_cost(run)})
        run.write_manifest(manifest)
        assembly.close()
    return counts


def _total_cost(run: RunDir) -> float | None:
    costs = [r.get("cost_usd") for r in run.attempts()]  # what was spent: retried attempts cost too
    known = [c for c in costs if c is not None]
    return round(sum(known), 6) if known else None
