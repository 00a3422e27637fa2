"""Errors with a meaning for the user: where it went wrong, and how to fix it."""
from __future__ import annotations


class ClinseekError(Exception):
    """A failure the CLI reports in one message, without a traceback (unless --debug)."""

    exit_code = 1

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class UserError(ClinseekError):
    """Bad input the user can fix (YAML, plugin names, files, arguments): exit code 2."""

    exit_code = 2


class UserErrors(UserError):
    """Several independent problems reported at once, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))

    def render(self) -> str:
        return "\n".join(self.problems)


class ToolError(Exception):
    """Raised by a tool to answer the model with an error observation it can act on.

    The episode goes on; the message is shown to the model as is, so say what was wrong and what to do instead.
    """
