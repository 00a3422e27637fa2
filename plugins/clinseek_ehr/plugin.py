"""Entry point of the built-in 'ehr' plugin (registered in pyproject like a third party's)."""
from clinseek.hookspecs import hookimpl


@hookimpl
def register_toolsets(register):
    from clinseek_ehr.compat import EhrReferenceToolset
    from clinseek_ehr.toolset import EhrToolset

    register(EhrToolset)
    register(EhrReferenceToolset)


@hookimpl
def register_commands(cli):
    from clinseek_ehr.audit_cli import audit

    cli.add_command(audit)
