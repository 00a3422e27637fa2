"""Entry point of the built-in 'cxr' plugin (registered in pyproject like a third party's)."""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    try:
        from clinseek_cxr.toolset import CxrToolset
    except ImportError:  # still being built
        return
    register(CxrToolset)
