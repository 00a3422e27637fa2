"""Entry point of the built-in 'kb' plugin (registered in pyproject like a third party's)."""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    try:
        from clinseek_kb.toolset import KbToolset
    except ImportError:  # still being built
        return
    register(KbToolset)
