"""Errors a host raises when a model server fails in a way retries could not fix."""
from __future__ import annotations

from clinseek.errors import ClinseekError


class HostError(ClinseekError):
    """The host could not produce a reply (server errors after retries, timeouts, malformed bodies).

    The engine records the episode as `status: error` with this message as the reason.
    """

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None,
                 status: int | None = None, retryable: bool = False):
        self.status = status
        self.retryable = retryable
        super().__init__(message, where=where, hint=hint)


class HostRequestRejected(HostError):
    """A 4xx other than 429: the request itself is wrong (bad key, unknown model, bad parameter); never retried.

    Every other episode would fail the same way, so the engine stops the run (finished episodes are kept; --resume
    continues once the recipe is fixed) and the CLI exits 2: the fix is in the user's configuration.
    """

    exit_code = 2
    aborts_run = True
