"""The core plugin: built-in hosts, task sources, exporters and scorers, registered like any plugin's."""
from __future__ import annotations

from clinseek.hookspecs import hookimpl


@hookimpl
def register_hosts(register):
    from clinseek.hosts.builtin import BUILTIN_HOSTS

    for host in BUILTIN_HOSTS:
        register(host)


@hookimpl
def register_task_sources(register):
    from clinseek.tasks import JsonlTaskSource

    register(JsonlTaskSource)


@hookimpl
def register_exporters(register):
    from clinseek.exporters import BUILTIN_EXPORTERS

    for exporter in BUILTIN_EXPORTERS:
        register(exporter)


@hookimpl
def register_scorers(register):
    from clinseek.scorers import BUILTIN_SCORERS

    for scorer in BUILTIN_SCORERS:
        register(scorer)
