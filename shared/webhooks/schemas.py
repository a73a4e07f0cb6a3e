"""Customer webhooks' wire shapes: a subscription as created, read, listed and changed."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import ConfigDict, Field

from shared.wire import Closed, Open

if TYPE_CHECKING:  # the row is read, not imported: clients use these shapes too
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


class Webhook(Open):
    id: uuid.UUID
    url: str
    events: list[EventType]
    description: str | None
    created_at: datetime

    @classmethod
    def of(cls, row: WebhookSubscription) -> Webhook:
        return cls(
            id=row.id,
            url=row.url,
            events=row.events,  # type: ignore[arg-type]  # stored as validated
            description=row.description,
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
