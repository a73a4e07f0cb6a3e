"""Customer webhooks' wire shapes: a subscription as created, read, listed and changed, and
its deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.wire import Closed, Open, QueryInt

if TYPE_CHECKING:  # the row is read, not imported: clients use these shapes too
    from shared.webhooks.models import WebhookDelivery as DeliveryRow
    from shared.webhooks.models import WebhookSubscription

# The job events a subscription can receive (`shared.jobs.events` writes them).
EventType = Literal[
    "job.queued",
    "job.processing",
    "asset.ingested",
    "job.completed",
    "job.failed",
    "job.cancelled",
]
URL = Field(max_length=2000, description="Where deliveries are POSTed: an https or http URL.")
EVENTS = Field(min_length=1, max_length=6, description="The event types sent to this URL.")
DESCRIPTION = Field(default=None, max_length=500, description="A note for people.")


class WebhookCreate(Closed):
    url: str = URL
    events: list[EventType] = EVENTS
    description: str | None = DESCRIPTION


class WebhookUpdate(Closed):
    """Only the members given change; `description: null` clears it."""

    url: str | None = Field(default=None, max_length=2000, description=URL.description)
    events: list[EventType] | None = Field(
        default=None, min_length=1, max_length=6, description=EVENTS.description
    )
    description: str | None = DESCRIPTION
    status: Literal["enabled"] | None = Field(
        default=None, description="`enabled` turns a disabled subscription back on."
    )


class Webhook(Open):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    status: Literal["enabled", "disabled"] = Field(
        description="`disabled` once every delivery attempt has failed for "
        "`WEBHOOK_DISABLE_AFTER_SECONDS` (5 days by default): nothing is sent until a PATCH "
        '`{"status": "enabled"}`.'
    )
    disabled_reason: str | None = Field(description="Why it was disabled; null when enabled.")
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookSubscription) -> Webhook:
        return cls(
            id=row.id,
            url=row.url,
            events=row.events,  # type: ignore[arg-type]  # stored as validated
            description=row.description,
            status="enabled" if row.disabled_at is None else "disabled",
            disabled_reason=row.disabled_reason,
            created_at=row.created_at,
        )


class WebhookCreated(Webhook):
    secret: str = Field(
        description="The signing secret (`whsec_` and base64), shown this once: deliveries "
        "are signed with it as Standard Webhooks specifies."
    )


class WebhookList(Open):
    model_config = ConfigDict(title="WebhookList")

    data: list[Webhook]


DeliveryStatus = Literal["pending", "delivered", "failed"]


class WebhookDelivery(Open):
    """One event sent (or to send) to one subscription; `id` is its `webhook-id` header."""

    id: uuid.UUID
    event: EventType
    job_id: uuid.UUID
    seq: int = Field(description="The event's number among its job's events (1, 2, 3…).")
    status: DeliveryStatus = Field(
        description="`pending` (its next attempt is due at `next_attempt_at`, or it waits for "
        "the job's earlier events), `delivered` (a 2xx), or `failed` (a 4xx other than 408 "
        "and 429, or every retry spent)."
    )
    attempts: int
    last_response_code: int | None = Field(description="The receiver's last HTTP status.")
    last_error: str | None = Field(description="Why the last attempt had no answer.")
    latency_ms: int | None = Field(description="How long the last attempt took.")
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: DeliveryRow) -> WebhookDelivery:
        return cls(
            id=row.id,
            event=row.event_type,  # type: ignore[arg-type]  # one of the event types
            job_id=row.job_id,
            seq=row.seq,
            status=row.status,  # type: ignore[arg-type]  # one of the statuses
            attempts=row.attempts,
            last_response_code=row.last_status_code,
            last_error=row.last_error,
            latency_ms=row.last_latency_ms,
            last_attempt_at=row.last_attempt_at,
            next_attempt_at=row.next_attempt_at,
            created_at=row.created_at,
        )


class WebhookDeliveryList(Open):
    data: list[WebhookDelivery]


class DeliveryQuery(BaseModel):
    limit: QueryInt = Field(default=50, ge=1, le=500, description="How many, newest first.")
