"""The job row, its events, and the idempotency keys that point at jobs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow
from shared.jobs.status import JobStatus

# A job waiting for a slot from the fair scheduler (the partial index's predicate).
WAITING = "status = 'queued' AND capacity_limited AND admitted_at IS NULL"


class StatusColumn(TypeDecorator[JobStatus]):
    """Stores a `JobStatus` as its name (VARCHAR(16)) and reads it back as the enum."""

    impl = String(16)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else JobStatus(value).value

    def process_result_value(self, value: str | None, dialect: Any) -> JobStatus | None:
        return None if value is None else JobStatus(value)


class Job(Base):
    """One generation job. `status` is the internal state machine of DESIGN.md."""

    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_account_created", "account_id", "created_at", "id"),
        Index("ix_jobs_status_updated", "status", "updated_at"),
        Index("ix_jobs_due_at", "due_at"),
        Index("ix_jobs_model_delivered", "model", "provider_completed_at"),
        # The jobs waiting for a slot, per provider, oldest first (the fair scheduler).
        Index(
            "ix_jobs_waiting",
            "provider",
            "created_at",
            postgresql_where=text(WAITING),
            sqlite_where=text(WAITING),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    type: Mapped[str] = mapped_column(String(32), default="video_generation")
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[dict[str, Any]]
    job_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    status: Mapped[JobStatus] = mapped_column(StatusColumn(), default=JobStatus.QUEUED)
    progress: Mapped[int] = mapped_column(Integer, default=0)
    queue_position: Mapped[int | None]
    provider_logs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    provider: Mapped[str] = mapped_column(String(32))
    provider_request_id: Mapped[str | None] = mapped_column(String(200), index=True)
    submit_attempted_at: Mapped[datetime | None]
    # DELETE of a job at the provider asks it to cancel; the job ends on what really happens.
    cancel_requested_at: Mapped[datetime | None]
    # Fencing token of the one live poll loop: a poll message with another token exits.
    poll_token: Mapped[str | None] = mapped_column(String(32))
    poll_count: Mapped[int] = mapped_column(Integer, default=0)
    estimated_seconds: Mapped[int] = mapped_column(Integer)
    estimated_credits: Mapped[int] = mapped_column(BigInteger)
    credits_used: Mapped[int | None] = mapped_column(BigInteger)
    provider_result: Mapped[dict[str, Any] | None]
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
    ingest_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    provider_completed_at: Mapped[datetime | None]
    # When the provider first reported the request complete while its result could not be
    # fetched (5xx, unreachable): retried from then until `RESULT_RETRY_SECONDS` run out.
    result_unfetched_since: Mapped[datetime | None]
    completed_at: Mapped[datetime | None]
    deadline_at: Mapped[datetime]
    # When the next step of an unfinished job is due (None once it is final): the step
    # itself follows from the state (`machine.step_for`). Written with every state change,
    # so a message lost with a worker or the broker is sent again by the dispatcher.
    due_at: Mapped[datetime | None]
    # The lease of the one ingest running for the job (None: none is): a duplicate message
    # or a re-sent step leaves a running download alone until the lease runs out.
    ingest_started_at: Mapped[datetime | None]
    # The sequence number of the job's latest event (`JobEvent.seq`), bumped by the same
    # update that makes the change: the row lock orders a job's events without gaps.
    event_seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The API key that submitted the job (budgets per key, usage by key); None for jobs
    # made before keys were recorded.
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    # The batch the job is an item of (its hold is the batch's aggregate hold).
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"), index=True)
    # The binding quote the job was priced by.
    quote_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("quotes.id"))
    # Fair scheduling (`shared.jobs.admission`): a job that counts against a capacity (its
    # provider's, its model's or its account's) waits in our queue with `admitted_at` None
    # until the scheduler gives it a slot, and gives the slot back when it leaves the
    # provider. Jobs no capacity limits are admitted when they are made.
    capacity_limited: Mapped[bool] = mapped_column(default=False, server_default=false())
    admitted_at: Mapped[datetime | None]
    # What the provider reported it billed for the request, when it reports it (fal:
    # `x-fal-billable-units`), and that at the model's unit price.
    provider_units: Mapped[float | None]
    provider_cost_usd: Mapped[float | None]


class JobEvent(Base):
    """A change of a job a customer can see, written in the transaction that made it (an
    outbox): `job.queued`, `job.processing`, `job.completed`, `job.failed`,
    `job.cancelled`, `asset.ingested`. `seq` counts 1, 2, 3… per job without gaps; `data`
    is the job's public view at that moment (`schemas.Job.of(row, None)`: the video's URL
    is the provider's, as our signed copy's is made at read time)."""

    __tablename__ = "job_events"
    __table_args__ = (
        # A job's events after a sequence number (a stream resuming); no seq twice.
        UniqueConstraint("job_id", "seq"),
        # The events no delivery has taken yet, oldest first.
        Index(
            "ix_job_events_undispatched",
            "id",
            postgresql_where=text("dispatched_at IS NULL"),
            sqlite_where=text("dispatched_at IS NULL"),
        ),
    )

    # The order events were written in, across jobs (what deliveries reference).
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    seq: Mapped[int] = mapped_column(Integer)
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    data: Mapped[dict[str, Any]]
    # When the deliveries took the event (fanned it out to subscriptions); None: not yet.
    dispatched_at: Mapped[datetime | None]


class IdempotencyKey(Base):
    """The first job made under an `Idempotency-Key`, with a hash of the request body."""

    __tablename__ = "idempotency_keys"

    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class EarlyCallback(Base):
    """A verified provider callback that came before its job recorded the request id (the
    provider finished before our submit call returned): applied by the submit task once it
    records the id. `result` (the video) or `error` ({code, message}); neither: poll now."""

    __tablename__ = "early_callbacks"

    request_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    result: Mapped[dict[str, Any] | None]
    error: Mapped[dict[str, Any] | None]
