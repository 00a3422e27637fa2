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


class HostUnreachable(HostError):
    """The model server cannot be reached: several connection attempts in a row failed (refused, a name that does
    not resolve, no route), across episodes, with no reply in between (`host.stop_after_connection_failures`).

    Every other episode would only wait out its retries, so the run stops: finished episodes are kept, episodes in
    flight are not recorded, and `clinseek apply ... --resume RUN_DIR` finishes the run once the server is up.
    """

    exit_code = 2
    aborts_run = True

    def __init__(self, message: str, *, url: str, where: str | None = None, hint: str | None = None):
        self.url = url
        super().__init__(message, where=where, hint=hint, retryable=True)
