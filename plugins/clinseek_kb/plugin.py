"""Entry point of the built-in 'kb' plugin (registered in pyproject like a third party's)."""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    from clinseek_kb.toolset import KbToolset  # cheap: heavy libraries load in open() and the tools

    register(KbToolset)


@hookimpl
def register_embedders(register):
    from clinseek_kb.embedder import MiniLmEmbedder  # cheap: onnxruntime loads when it is first constructed

    register(MiniLmEmbedder)


@hookimpl
def register_commands(cli):
    from clinseek_kb.cli import kb

    cli.add_command(kb)
