"""Entry point of the built-in 'ehr' plugin (registered in pyproject like a third party's)."""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    try:
        from clinseek_ehr.toolset import EhrToolset
    except ImportError:  # still being built
        return
    register(EhrToolset)
