"""Entry point of the built-in 'cxr' plugin (registered in pyproject like a third party's).

Importing this module stays cheap: onnxruntime, torch and pydicom load only when a tool or command runs.
"""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    from clinseek_cxr.toolset import CxrToolset

    register(CxrToolset)


@hookimpl
def register_commands(cli):
    from clinseek_cxr.commands import cxr, models  # the shared `models` group, with check and export added

    cli.add_command(models)
    cli.add_command(cxr)
