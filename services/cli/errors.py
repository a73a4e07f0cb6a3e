"""The one failure type every command reports, and the exit codes it maps to."""

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Process exit codes; `naive --help` lists them."""

    USER_ERROR = 2
    SERVICE_ERROR = 3
    JOB_FAILED = 4
    INTERRUPTED = 130


class Failure(Exception):
    """A command failed: `error` is the API's error object, or one made in its shape."""

    def __init__(
        self, error: dict[str, Any], exit_code: ExitCode, *, retry_after: float | None = None
    ) -> None:
        super().__init__(error.get("message", ""))
        self.error = error
        self.exit_code = exit_code
        self.retry_after = retry_after

    @property
    def code(self) -> str:
        """The error's machine-readable code, e.g. `insufficient_credits`."""
        return str(self.error.get("code", "error"))
