"""The `clinseek` command line. Each command is thin: it parses arguments and calls the library.

Subcommands live in their own modules and load lazily, so `clinseek --help` stays fast.
"""
from __future__ import annotations

import importlib
import os
import sys

import click

# name -> "module:attribute" of a click command; imported only when used (or listed by --help).
LAZY_COMMANDS = {
    "validate": "clinseek.commands.run_cmds:validate",
    "apply": "clinseek.commands.run_cmds:apply",
    "tools": "clinseek.commands.run_cmds:tools",
    "call": "clinseek.commands.run_cmds:call",
    "tasks": "clinseek.commands.tasks_cmd:tasks",
    "plugins": "clinseek.commands.plugins_cmd:plugins",
    "score": "clinseek.commands.eval_cmds:score",
    "report": "clinseek.commands.eval_cmds:report",
    "export": "clinseek.commands.eval_cmds:export",
    "compare": "clinseek.compare:compare",
    "cache": "clinseek.hosts.cache_cli:cache",
    "import": "clinseek.commands.import_cmds:import_group",
}
# One-line help for `clinseek --help`, so listing commands imports none of their modules.
LAZY_HELP = {
    "validate": "Check a recipe: schema, plugins, configs, templates.",
    "apply": "Assemble the agent a recipe describes and run it over its tasks.",
    "tools": "Show the exact tool schemas the model will be given.",
    "call": "Run one tool call inside a task's episode and print the observation.",
    "tasks": "List the tasks (qids) a recipe selects, with filters.",
    "plugins": "List plugins and what each registers.",
    "score": "Score a run directory (ClinSeek-Bench set F1).",
    "report": "Write a run's self-contained HTML report.",
    "export": "Export a run's trajectories for fine-tuning.",
    "compare": "Compare runs over the same tasks, with paired bootstrap intervals.",
    "cache": "Inspect or clear the host response cache.",
    "import": "Import another system's runs (the reference's results.jsonl) as a run directory.",
}


class LazyGroup(click.Group):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._plugin_commands_loaded = False

    def _load_plugin_commands(self) -> None:
        if self._plugin_commands_loaded:
            return
        self._plugin_commands_loaded = True
        from clinseek.plugins import loaded_registry

        loaded_registry().pm.hook.register_commands(cli=self)

    def list_commands(self, ctx):
        self._load_plugin_commands()
        return sorted(set(super().list_commands(ctx)) | set(LAZY_COMMANDS))

    def format_commands(self, ctx, formatter):
        self._load_plugin_commands()
        rows = []
        for name in self.list_commands(ctx):
            if name in LAZY_COMMANDS:
                rows.append((name, LAZY_HELP.get(name, "")))
            else:
                cmd = super().get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=70)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx, name):
        if name in LAZY_COMMANDS:
            module_name, attr = LAZY_COMMANDS[name].split(":")
            try:
                return getattr(importlib.import_module(module_name), attr)
            except (ImportError, AttributeError) as exc:
                return _unavailable(name, exc)
        cmd = super().get_command(ctx, name)
        if cmd is None:
            self._load_plugin_commands()
            cmd = super().get_command(ctx, name)
        return cmd


def _unavailable(name: str, exc: Exception) -> click.Command:
    @click.command(name=name, help=f"(unavailable: {exc})", context_settings={"ignore_unknown_options": True})
    @click.argument("args", nargs=-1)
    def cmd(args):
        raise click.UsageError(f"command {name!r} is unavailable in this installation: {exc}")

    return cmd


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clinseek")
@click.option("--debug", is_flag=True, envvar="CLINSEEK_DEBUG", help="Show tracebacks for errors.")
def cli(debug: bool) -> None:
    """clinseek: run evidence-seeking clinical agents from declarative recipes."""
    if debug:
        os.environ["CLINSEEK_DEBUG"] = "1"


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one message and exit 2; no traceback unless --debug."""
    from clinseek.errors import ClinseekError

    try:
        # Outside standalone mode click returns ctx.exit(code) instead of exiting: keep that code (audit's 1).
        code = cli.main(args=argv, prog_name="clinseek", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2 if exc.exit_code in (1, 2) else exc.exit_code)
    except ClinseekError as exc:
        if os.environ.get("CLINSEEK_DEBUG"):
            raise
        from clinseek.redact import redact_text

        click.echo(f"error: {redact_text(exc.render())}", err=True)   # a message may quote an interpolated secret
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
