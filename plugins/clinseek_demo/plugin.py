"""Entry point of the built-in 'demo' plugin: the synthetic world (registered in pyproject like a third party's).

It registers the `rules` baseline host, the `demo` task source, the `clinseek data` command group, and answers
`database: demo:` for the toolsets that read a site database. Importing this module stays cheap.
"""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_hosts(register):
    from clinseek_demo.rules.host import RulesHost

    register(RulesHost)


@hookimpl
def register_task_sources(register):
    from clinseek_demo.source import DemoTaskSource

    register(DemoTaskSource)


@hookimpl
def register_commands(cli):
    from clinseek_demo.cli import data

    cli.add_command(data)


@hookimpl
def resolve_database(spec, toolset, context):
    from clinseek_demo.database_spec import resolve_database as resolve_demo

    return resolve_demo(spec, context, toolset=toolset)
