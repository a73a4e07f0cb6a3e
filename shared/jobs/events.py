"""Job events: the outbox that customer webhooks and Server-Sent Events read.

Every change of a job a customer can see is written as a `JobEvent` in the transaction that
makes it, numbered per job by `jobs.event_seq`, which the same conditional update bumps: the
row lock it holds orders a job's events, a duplicate task whose update matches nothing
writes none, and a rollback takes the event with the change.

This module decides which moves are seen and how many events each writes (`count`), what
they are called (`types_for`), and writes them (`emit`); `shared.jobs.service` asks it on
every move. Moves that only re-arm a due time, claim a step or free a lease change nothing
a customer sees, and emit nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import BindParameter, bindparam, insert, select
from sqlalchemy.orm import Session

from shared.db import JSONText, Prepared, utcnow
from shared.jobs.models import Job, JobEvent
from shared.jobs.schemas import Job as JobView
from shared.jobs.status import JobStatus

ASSET_INGESTED = "asset.ingested"
# The job's columns its public view shows (`schemas.Job.of`) that a move may write: a move
# writing one of them is seen. (`status` is seen when its public name changes.)
VISIBLE = frozenset(
    {
        "progress",
        "queue_position",
        "provider_logs",
        "provider_request_id",
        "estimated_seconds",
        "cancel_requested_at",
        "started_at",
        "completed_at",
        "credits_used",
        "result",
        "error",
        "provider_units",
        "provider_cost_usd",
    }
)


def _insert(rows: int) -> Prepared:
    """One statement writing a move's `rows` events (a completed job writes two), which
    share the job, the time and the view. The view comes as JSON text, as pydantic renders
    it (in Rust): the database reads it into the column, where a dict would be built in
    Python and serialized again by the driver."""
    shared: dict[str, BindParameter[Any]] = {
        name: bindparam(name) for name in ("job_id", "account_id", "created_at")
    }
    shared["data"] = bindparam("data", type_=JSONText())
    values = [
        {**shared, "seq": bindparam(f"seq{i}"), "type": bindparam(f"type{i}")} for i in range(rows)
    ]
    return Prepared(insert(JobEvent).values(values))


_INSERTS = {rows: _insert(rows) for rows in (1, 2)}
_AFTER = (
    select(JobEvent)
    .where(JobEvent.job_id == bindparam("job_id"), JobEvent.seq > bindparam("after"))
    .order_by(JobEvent.seq)
    .limit(bindparam("limit"))
)


def types_for(status: JobStatus) -> tuple[str, ...]:
    """The events a job in `status` emits, in order: `job.<public status>`; a completed job's
    video is in its library, so `asset.ingested` comes first, the final state last."""
    final = f"job.{status.public.value}"
    return (ASSET_INGESTED, final) if status is JobStatus.COMPLETED else (final,)


def count(expected: Sequence[JobStatus], values: Mapping[str, Any]) -> int:
    """How many events a move from `expected` writing `values` emits (how far it bumps
    `event_seq`): none unless it changes what a customer sees, its public status or a
    column of its public view. Callers write a view column only when its value changes (a
    poll that reports the same progress writes none)."""
    target: JobStatus | None = values.get("status")
    if target is not None and any(source.public is not target.public for source in expected):
        return len(types_for(target))
    if VISIBLE.isdisjoint(values):
        return 0
    return len(types_for(target or expected[0]))


def emit(session: Session, job: Job) -> None:
    """Write the events of the move that left `job` as it is (its `event_seq` already
    bumped by `len(types_for(job.status))`), each with the job's public view."""
    insert, values = insert_for(job, utcnow())
    insert.rows(session.connection(), values)


def insert_for(job: Job, at: datetime) -> tuple[Prepared, dict[str, Any]]:
    """The statement and its values that write `emit`'s events, made at `at` (for a
    statement that writes them with others: a new job's, with the job and its hold)."""
    types = types_for(job.status)
    first = job.event_seq - len(types) + 1
    values: dict[str, Any] = {
        "job_id": job.id,
        "account_id": job.account_id,
        "created_at": at,
        "data": JobView.of(job, None).model_dump_json(),
    }
    for i, kind in enumerate(types):
        values[f"seq{i}"], values[f"type{i}"] = first + i, kind
    return _INSERTS[len(types)], values


def events_after(
    *, session: Session, job_id: uuid.UUID, after: int = 0, limit: int = 100
) -> list[JobEvent]:
    """The job's events with a sequence number above `after`, in order (a stream resuming
    from its last seen event)."""
    return list(session.scalars(_AFTER, {"job_id": job_id, "after": after, "limit": limit}))
