"""The API's one error shape, `{"error": {"code", "message", ...}}`, and the domain errors
that fill it.

Each error class names its code, its HTTP status and the pydantic model of its `error`
member (`Detail`), so the same class raises, renders and documents the error.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.jobs.status import PublicStatus


class ErrorDetail(BaseModel):
    """`error`: a code a program can switch on and a message a person can read."""

    model_config = ConfigDict(extra="allow")

    code: str
    message: str


class ErrorBody(BaseModel):
    """The one error shape; `error` has more members for some codes."""

    model_config = ConfigDict(title="Error")

    error: ErrorDetail


ECHO_CHARS = 40


def shorten(text: str) -> str:
    """`text` cut to ECHO_CHARS with an ellipsis: an error message points at a bad value
    (or a client's key), it does not repeat a 3000-character prompt."""
    return text if len(text) <= ECHO_CHARS else text[: ECHO_CHARS - 1] + "…"


def echo(value: Any) -> str:
    """`repr(value)` for an error message, shortened."""
    return shorten(repr(value))


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    """The error shape as JSON, through its model."""
    detail = ErrorDetail(code=code, message=message, **extra)
    return ErrorBody(error=detail).model_dump(mode="json")


class DomainError(Exception):
    """An error a client can act on: `code` and `extra` end up in `{"error": {...}}`."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400
    description: ClassVar[str] = "An error."
    Detail: ClassVar[type[ErrorDetail]] = ErrorDetail

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra

    def to_dict(self) -> dict[str, Any]:
        """The `error` member, checked against this error's model."""
        detail = self.Detail.model_validate(
            {"code": self.code, "message": self.message, **self.extra}
        )
        return detail.model_dump(mode="json", exclude_none=True)


class InvalidInputDetail(ErrorDetail):
    code: Literal["invalid_input"] = "invalid_input"
    fields: dict[str, str] = Field(
        description="What is wrong with each named field (`input.duration`, `limit`, …)."
    )
    models_url: str | None = None


class InvalidInput(DomainError):
    code = "invalid_input"
    http_status = 422
    description = "Invalid input; each bad field is named."
    Detail = InvalidInputDetail


# A batch's item as an error names it, counted from 0: `items[1]` (the service's checks) or
# `items.1` (the body's shape).
BATCH_ITEM = re.compile(r"items(?:\[(\d+)\]|\.(\d+))")
_MODEL_FIELD = re.compile(rf"(?:{BATCH_ITEM.pattern}\.)?(?:model|input)(?:\.|$)")


def is_model_field(name: str) -> bool:
    """Whether an `invalid_input` field is the model or its input (in a batch, after its
    item): the model catalog says what those take; any other field is the request's own."""
    return _MODEL_FIELD.match(name) is not None


class InvalidModelDetail(ErrorDetail):
    code: Literal["invalid_model"] = "invalid_model"
    models_url: str
    suggestions: list[str]


class InvalidModel(DomainError):
    code = "invalid_model"
    http_status = 404
    description = "Unknown model."
    Detail = InvalidModelDetail


class InsufficientCreditsDetail(ErrorDetail):
    code: Literal["insufficient_credits"] = "insufficient_credits"
    estimated_credits: float
    available_credits: float
    pricing_url: str
    hint: str = Field(description="How to get credits.")


class InsufficientCredits(DomainError):
    code = "insufficient_credits"
    http_status = 402
    description = "Not enough available credits for the estimate."
    Detail = InsufficientCreditsDetail


class NotFoundDetail(ErrorDetail):
    code: Literal["not_found"] = "not_found"


class NotFound(DomainError):
    code = "not_found"
    http_status = 404
    description = "Not found (another account's object is not found either)."
    Detail = NotFoundDetail


class UnauthorizedDetail(ErrorDetail):
    code: Literal["unauthorized"] = "unauthorized"


class Unauthorized(DomainError):
    code = "unauthorized"
    http_status = 401
    description = "No valid API key."
    Detail = UnauthorizedDetail


class InvalidMediaTokenDetail(ErrorDetail):
    code: Literal["invalid_media_token"] = "invalid_media_token"


class InvalidMediaToken(DomainError):
    code = "invalid_media_token"
    http_status = 403
    description = "The media URL's token is altered or expired."
    Detail = InvalidMediaTokenDetail


class IdempotencyConflictDetail(ErrorDetail):
    code: Literal["idempotency_conflict"] = "idempotency_conflict"
    job_id: uuid.UUID | None = Field(default=None, description="The first job (a submit).")
    batch_id: uuid.UUID | None = Field(default=None, description="The first batch (a batch).")


class IdempotencyConflict(DomainError):
    code = "idempotency_conflict"
    http_status = 409
    description = "This Idempotency-Key was used with another body."
    Detail = IdempotencyConflictDetail


class NotCancellableDetail(ErrorDetail):
    code: Literal["not_cancellable"] = "not_cancellable"
    status: PublicStatus


class NotCancellable(DomainError):
    code = "not_cancellable"
    http_status = 409
    description = "The job was delivered and can no longer be cancelled."
    Detail = NotCancellableDetail


class BudgetState(BaseModel):
    """A budget as a refusal reports it."""

    id: uuid.UUID
    scope: Literal["account", "key"]
    key_id: uuid.UUID | None = Field(
        default=None, description="The key, for a key's budget; absent for the account's."
    )
    period: Literal["day", "month"]
    credits: float
    period_start: datetime = Field(description="When the current period began (UTC).")


class BudgetExceededDetail(ErrorDetail):
    code: Literal["budget_exceeded"] = "budget_exceeded"
    budget: BudgetState
    spent_credits: float = Field(description="Committed in the period: charged plus held.")
    remaining_credits: float
    estimated_credits: float = Field(description="What the refused request would commit.")


class BudgetExceeded(DomainError):
    code = "budget_exceeded"
    http_status = 402
    description = "The request would take a budget of the account or the key past its limit."
    Detail = BudgetExceededDetail


class QuoteExpiredDetail(ErrorDetail):
    code: Literal["quote_expired"] = "quote_expired"
    quote_id: uuid.UUID
    expired_at: datetime


class QuoteExpired(DomainError):
    code = "quote_expired"
    http_status = 409
    description = "The quote's price no longer holds: ask for a new quote."
    Detail = QuoteExpiredDetail


class QuoteMismatchDetail(ErrorDetail):
    code: Literal["quote_mismatch"] = "quote_mismatch"
    quote_id: uuid.UUID


class QuoteMismatch(DomainError):
    code = "quote_mismatch"
    http_status = 409
    description = "The quote was made for another model or input (or is unknown)."
    Detail = QuoteMismatchDetail
