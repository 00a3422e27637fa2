"""Entry point: clinseek calls these hooks with a `register` callback."""
from clinseek import hookimpl


@hookimpl
def register_toolsets(register):
    from clinseek_sitenotes.toolset import SiteNotes

    register(SiteNotes)


@hookimpl
def register_hosts(register):
    from clinseek_sitenotes.host import KeywordHost

    register(KeywordHost)
