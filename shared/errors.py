"""Domain errors that carry the public error code of the API's one error shape."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """An error a client can act on: `code` and `extra` end up in `{"error": {...}}`."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.extra}


class InvalidInput(DomainError):
    code = "invalid_input"
    http_status = 422


class InvalidModel(DomainError):
    code = "invalid_model"
    http_status = 404


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    http_status = 402


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class Unauthorized(DomainError):
    code = "unauthorized"
    http_status = 401


class Conflict(DomainError):
    """The request clashes with stored state (a reused idempotency key, a finished job)."""

    code = "conflict"
    http_status = 409
