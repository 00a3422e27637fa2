"""`clinseek plugins`: what is installed and what each plugin registers."""
from __future__ import annotations

import json

import click


def plugin_table() -> list[dict]:
    from clinseek.plugins import KINDS, get_registry

    reg = get_registry()
    rows = []
    for name, info in sorted(reg.plugins.items()):
        row = {"name": name, "distribution": info.distribution, "version": info.version, "module": info.module,
               "builtin": info.builtin, "hooks": info.hooks, "error": info.error}
        for kind in KINDS:
            row[kind] = sorted(k for k, (_, plugin) in reg.items[kind].items() if plugin == name)
        row["tools"] = {}
        for ts_name in row["toolsets"]:
            cls = reg.items["toolsets"][ts_name][0]
            try:
                row["tools"][ts_name] = [s.name for s in cls.tool_specs()]
            except Exception as exc:  # noqa: BLE001 - a broken toolset is reported, not fatal
                row["tools"][ts_name] = [f"(error: {exc})"]
        rows.append(row)
    return rows


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json):
    """List every plugin: distribution, version, hooks, and what it registers."""
    rows = plugin_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        state = f"  FAILED: {row['error']}" if row["error"] else ""
        origin = "built-in" if row["builtin"] else "third-party"
        click.echo(f"{row['name']} ({row['distribution']} {row['version']}, {origin}){state}")
        if row["hooks"]:
            click.echo(f"  hooks: {', '.join(row['hooks'])}")
        for ts in row["toolsets"]:
            click.echo(f"  toolset {ts}: {', '.join(row['tools'].get(ts, []))}")
        for kind, label in (("hosts", "hosts"), ("task_sources", "task sources"), ("exporters", "exporters"),
                            ("scorers", "scorers"), ("embedders", "embedders")):
            if row[kind]:
                click.echo(f"  {label}: {', '.join(row[kind])}")
