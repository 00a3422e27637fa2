"""Entry point of the built-in 'llm' plugin: the `llamacpp` host and `clinseek models get|list`.

Importing this module stays cheap: llama-cpp-python loads only when a model does.
"""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_hosts(register):
    from clinseek_llm.host import LlamaCppHost

    register(LlamaCppHost)


@hookimpl
def register_commands(cli):
    from clinseek_llm.commands import models  # the shared `models` group, with get and list added

    cli.add_command(models)
