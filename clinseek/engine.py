"""Assembling a recipe into a runnable agent, and running it over the tasks.

recipe -> plugin names resolved -> configs validated -> toolsets opened once -> tasks streamed -> episodes run
concurrently (`workers`) -> results and trajectories appended to the run directory.
"""
from __future__ import annotations

import asyncio
import os
import random
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from clinseek.agent import AgentLimits, EpisodeRunner, ToolBox
from clinseek.errors import UserError, UserErrors
from clinseek.hosts.base import Host
from clinseek.plugins import Registry, get_registry
from clinseek.prompts import PromptSet, prompt_context
from clinseek.recipe.errors import format_validation_error
from clinseek.recipe.load import LoadedRecipe, redact_line
from clinseek.runs import RunDir, environment_facts, git_revision, utcnow
from clinseek.tasks import Task, TaskSource
from clinseek.toolsets import Toolset


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLINSEEK_CACHE") or Path.home() / ".cache" / "clinseek")


@dataclass
class RunContext:
    """What plugins may know about the run they are part of."""

    recipe_dir: Path
    cache_dir: Path = field(default_factory=default_cache_dir)
    run_dir: Path | None = None
    warnings: list[str] = field(default_factory=list)
    sink: Callable[[str], None] | None = None
    info_sink: Callable[[str], None] | None = None

    def warn(self, text: str) -> None:
        """Something the user should look at; kept in the run's events.log."""
        self.warnings.append(text)
        (self.sink or (lambda t: print(f"warning: {t}", file=sys.stderr)))(text)

    def info(self, text: str) -> None:
        """Progress worth a line (building an index, loading a model); not a problem."""
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

    @property
    def recipe(self):
        return self.loaded.recipe

    def open(self) -> None:
        if self.opened:
            return
        for ts in self.toolsets:
            ts.open()
        self.opened = True

    def close(self) -> None:
        for ts in self.toolsets:
            try:
                ts.close()
            except Exception:  # noqa: BLE001 - closing must not mask the run's outcome
                pass
        self.opened = False


def assemble(loaded: LoadedRecipe, registry: Registry | None = None, context: RunContext | None = None) -> Assembly:
    """Resolve every name and validate every config; report all problems at once."""
    registry = registry or get_registry()
    recipe = loaded.recipe
    context = context or RunContext(recipe_dir=loaded.dir)
    problems: list[str] = list(registry.conflicts)

    def where(path: tuple) -> str | None:
        return loaded.where(path)

    def validated(model: Any, data: dict, prefix: tuple) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            problems.extend(redact_line(line, loaded.secrets)
                            for line in format_validation_error(exc, prefix=prefix, where=where, model=model))
            return None

    host = None
    try:
        host_cls = registry.get("hosts", recipe.host.provider, where=where(("host", "provider")))
        host_cfg = validated(host_cls.Config, recipe.host.model_dump(), ("host",))
        if host_cfg is not None:
            host = host_cls(host_cfg, context)
    except UserError as exc:
        problems.append(exc.render())

    toolsets: list[Toolset] = []
    for i, use in enumerate(recipe.tools):
        try:
            ts_cls = registry.get("toolsets", use.use, where=where(("tools", i, "use")))
        except UserError as exc:
            problems.append(exc.render())
            continue
        cfg = validated(ts_cls.Config, use.with_, ("tools", i, "with"))
        if cfg is not None:
            toolsets.append(ts_cls(cfg, context))

    if recipe.agent.max_cost_usd is not None and host is not None and getattr(host.config, "price", None) is None:
        problems.append(f"{where(('agent', 'max_cost_usd'))}: agent.max_cost_usd: a cost budget needs host.price "
                        f"(USD per million input/output tokens); without it the budget could not be enforced")

    source = None
    try:
        src_cls = registry.get("task_sources", recipe.tasks.source, where=where(("tasks", "source")))
        path = loaded.resolve_path(recipe.tasks.path) if recipe.tasks.path else None
        options = {**recipe.tasks.with_, "on_error": recipe.tasks.on_error}
        source = src_cls(path, options, context)
    except UserError as exc:
        problems.append(exc.render())

    prompts = None
    try:
        prompts = PromptSet(loaded.dir, recipe.prompts.system, recipe.prompts.user, mode=recipe.agent.evidence,
                            where={"system": where(("prompts", "system")), "user": where(("prompts", "user"))})
    except UserError as exc:
        problems.append(exc.render())

    if recipe.output.export or recipe.output.mode == "trajectories":
        from clinseek.exporters.options import ExportOptions

        options = validated(ExportOptions, recipe.output.export, ("output", "export"))
        formats = options.formats if options else recipe.output.export.get("formats") or []
        for i, fmt in enumerate(formats if isinstance(formats, list) else []):
            try:
                registry.get("exporters", fmt, where=where(("output", "export", "formats", i)))
            except UserError as exc:
                problems.append(exc.render())

    toolbox = None
    try:
        toolbox = ToolBox.build(toolsets)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"{where(('tools',))}: {exc}")

    if problems:
        raise UserErrors(problems)
    assembly = Assembly(loaded=loaded, host=host, toolsets=toolsets, toolbox=toolbox, prompts=prompts,
                        source=source, context=context)
    check_governance(assembly)
    return assembly


def check_governance(assembly: Assembly) -> None:
    """Invariant 6: patient data goes to a host outside the site only when the recipe opts in."""
    recipe = assembly.recipe
    if recipe.governance.allow_external_hosts or assembly.host.site_local:
        return
    readers = [ts.name for ts in assembly.toolsets if ts.patient_data]
    if recipe.agent.evidence == "curated":
        readers.append("the curated evidence package")
    if not readers:
        return
    desc = assembly.host.describe()
    target = desc.get("base_url") or desc.get("provider")
    raise UserError(
        f"host {recipe.host.provider!r} ({target}) is outside the site, and {', '.join(readers)} would send it "
        f"patient data", where=assembly.loaded.where(("host",)),
        hint="use a host inside the site (loopback or private address, or host.site_local: true for one that is), "
             "or set governance.allow_external_hosts: true if your data agreement allows it")


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


def curated_evidence(assembly: Assembly, task: Task) -> str:
    """The evidence package of curated mode: the task's own `input`, or the ehr toolset's curator
    (`agent.curated.source` chooses; `auto` prefers the task's)."""
    spec = assembly.recipe.agent.curated
    if spec.source != "curator" and task.input:
        return task.input
    if spec.source == "task":
        raise UserError(f"task {task.qid} has no `input` field, and agent.curated.source is 'task'",
                        hint="use agent.curated.source: auto (the curator fills in) or tasks that carry input")
    ehr = next((ts for ts in assembly.toolsets if hasattr(ts, "curate")), None)
    if ehr is None:
        raise UserError(f"task {task.qid} has no `input` and no toolset can curate evidence",
                        hint="add the ehr toolset to tools, or use tasks that carry an input field")
    from clinseek.toolsets import Binding

    return ehr.curate(Binding.from_task(task), window_hours=spec.window_hours, max_events=spec.max_events)


def make_runner(assembly: Assembly, task: Task, run_index: int, log: Callable[[str], None] | None = None,
                evidence: str | None = None) -> EpisodeRunner:
    recipe = assembly.recipe
    seek = recipe.agent.evidence == "seek"
    schemas = assembly.toolbox.schemas(include_tools=seek)
    if not seek and evidence is None:
        evidence = curated_evidence(assembly, task)
    system, user = assembly.prompts.render(prompt_context(task, schemas, recipe, evidence=evidence,
                                                          mode=recipe.agent.evidence))
    return EpisodeRunner(task=task, run_index=run_index, host=assembly.host, toolbox=assembly.toolbox,
                         limits=AgentLimits.from_spec(recipe.agent), system=system, user=user, use_tools=seek,
                         price=getattr(assembly.host.config, "price", None), log=log)


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


def run_assembly(assembly: Assembly, tasks: list[Task], run: RunDir, *, workers: int = 4,
                 progress: Callable[[dict[str, Any], int, int], None] | None = None) -> dict[str, int]:
    """Run every (task, run_index) missing from the run directory; returns counts per status."""
    recipe = assembly.recipe
    done = run.done_keys()
    pending = [(t, i) for t in tasks for i in range(recipe.runs_per_task) if (t.qid, i) not in done]
    started = utcnow()
    assembly.context.run_dir = run.path
    assembly.context.sink = lambda text: (run.event(f"warning: {text}"), print(f"warning: {text}", file=sys.stderr))
    assembly.context.info_sink = lambda text: (run.event(text), print(text, file=sys.stderr))
    assembly.open()
    try:
        previous = run.manifest() if (run.path / "manifest.json").exists() else {}
        manifest = build_manifest(assembly, started=previous.get("started", started),
                                  extra={"resumed": bool(previous), "task_count": len(tasks)})
        run.write_manifest(manifest)
        run.event(f"running {len(pending)} episodes ({len(done)} already done) with {workers} workers")
        asyncio.run(_run_all(assembly, pending, run, workers, progress))
    finally:
        counts: dict[str, int] = {}
        for r in run.results():
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        manifest = build_manifest(assembly, started=manifest["started"] if "manifest" in locals() else started,
                                  ended=utcnow(), counts=counts,
                                  extra={"task_count": len(tasks), "cost_usd": _total_cost(run)})
        run.write_manifest(manifest)
        assembly.close()
    return counts


def _total_cost(run: RunDir) -> float | None:
    costs = [r.get("cost_usd") for r in run.results()]
    known = [c for c in costs if c is not None]
    return round(sum(known), 6) if known else None
