"""Every hook a clinseek plugin can implement. Each docstring is the hook's contract.

Registration hooks are callback style: the hook receives `register` and calls it once per thing it provides.
Names must be unique across plugins; a clash is an error naming both plugins.
"""
from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("clinseek")
hookimpl = pluggy.HookimplMarker("clinseek")


@hookspec
def register_toolsets(register):
    """Register Toolset subclasses: `register(MyToolset)`.

    The class sets `name` (used as `tools: - use: <name>` in recipes), `Config` (a pydantic model with
    extra="forbid", validated from the recipe's `with:` block) and `@tool` methods named `<name>_<verb>`.
    Importing the plugin module must stay cheap: import heavy libraries inside `open()` or the tools.
    """


@hookspec
def register_hosts(register):
    """Register Host subclasses: `register(MyHost)`. `MyHost.provider` is the recipe's `host.provider`."""


@hookspec
def register_task_sources(register):
    """Register TaskSource subclasses: `register(MySource)`. `MySource.name` is the recipe's `tasks.source`."""


@hookspec
def register_exporters(register):
    """Register Exporter subclasses: `register(MyExporter)`. `MyExporter.name` is an `--format` value."""


@hookspec
def register_scorers(register):
    """Register Scorer subclasses: `register(MyScorer)`. Scores are added to results under the scorer's name."""


@hookspec
def register_embedders(register):
    """Register sentence embedders: `register(MyEmbedder)`, a class with a `name`, a constructor taking no required
    argument, and `embed(texts: list[str]) -> numpy array` of L2-normalised rows. Other plugins fetch them by name
    from the registry (the ehr toolset's semantic candidate search does), never by importing the plugin."""


@hookspec
def register_commands(cli):
    """Add click commands or groups to the `clinseek` CLI: `cli.add_command(...)`. Keep imports inside them."""


@hookspec(firstresult=True)
def resolve_database(spec: str, toolset: str, context):
    """Turn a toolset's `database:` value into something the toolset can open, or return None to pass.

    Called by toolsets that read a site database (the built-in `ehr` and `cxr` call it through
    `clinseek.plugins.resolve_database`) before they treat the value as a path or a DSN. The first non-None
    answer wins. The demo plugin answers for `demo:` / `demo:patients=N,seed=S` with the cached demo cohort's
    DuckDB path; a site plugin could answer for its own scheme. Raise UserError for a spec it owns but cannot
    serve; `context` is the run's RunContext (cache_dir, info/warn) or None.
    """
