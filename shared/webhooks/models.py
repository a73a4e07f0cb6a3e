"""A customer's webhook subscriptions and their deliveries."""

from __future__ import annotations

import enum
import uuid
from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class WebhookSubscription(Base):
    """An account's URL and the event types it receives there. `secret` signs the
    deliveries (Standard Webhooks: HMAC-SHA256 with a shared key), so it is kept as it is,
    not hashed as API keys are; it is shown once, when the subscription is created.

    A row with `job_id` is a job's own webhook (`webhook_url` on the submit): it receives
    that job's events only and is not one of the account's subscriptions (not listed, not
    found by id); its secret is shown in the submit's answer (and its replays)."""

    __tablename__ = "webhook_subscriptions"
    __table_args__ = (
        Index("ix_webhook_subscriptions_account_created", "account_id", "created_at"),
        Index(
            "ix_webhook_subscriptions_job",
            "job_id",
            postgresql_where=text("job_id IS NOT NULL"),
            sqlite_where=text("job_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(500))
    secret: Mapped[str] = mapped_column(String(100))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When the first failed attempt since the last delivered one happened (null while the
    # receiver answers): failing for `WEBHOOK_DISABLE_AFTER_SECONDS` disables it.
    failing_since: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    disabled_reason: Mapped[str | None] = mapped_column(String(200))


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # due at `next_attempt_at` (or waiting for the job's earlier events)
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # given up: a 4xx that is not 408 or 429, or retries exhausted


class WebhookDelivery(Base):
    """One job event for one subscription: its body, fixed when the event is fanned out (every
    attempt and a redelivery send the same bytes under the same `webhook-id`, the row's id),
    and what its attempts found. A subscription receives a job's events in order: a delivery
    is sent only once none of the same job's earlier ones is pending."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # An event is fanned out to a subscription once.
        UniqueConstraint("subscription_id", "event_id"),
        # The log of a subscription, newest first.
        Index("ix_webhook_deliveries_subscription_created", "subscription_id", "created_at"),
        # The pending deliveries by due time (the dispatcher's scan), and a job's chain.
        Index(
            "ix_webhook_deliveries_pending",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_chain", "subscription_id", "job_id", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), ForeignKey("job_events.id")
    )
    job_id: Mapped[uuid.UUID]
    seq: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(32))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Failed attempts since the delivery was (re)started: the retry schedule's position.
    retries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    # A message for the next attempt is out until then: the dispatcher leaves it alone.
    leased_until: Mapped[datetime | None]
    last_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(200))
    last_latency_ms: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
