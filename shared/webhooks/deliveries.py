"""Customer webhook deliveries: fanned out from the job events outbox, sent in order per job,
retried on the schedule, listed and redelivered.

The dispatcher (beat) takes the events no delivery has taken yet (`fan_out`: one delivery
per matching subscription, its body fixed then) and sends every delivery that is due and
first among its job's pending ones for its subscription (`claim_due`), leasing it so the
next tick does not send it again while its message is out. The delivery task claims an
attempt (`begin_attempt`: the attempt number in the message fences duplicates), POSTs with
no transaction open, and records what it found (`record_attempt`), which says what to send
next: the same delivery later (a retry within the countdown horizon) or the job's next
event now. Retries further away are left to the dispatcher, so no long countdown sits in
Redis. Functions flush and leave the commit to the caller.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, exists, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from shared.config import Settings
from shared.errors import NotFound, echo
from shared.jobs.models import Job, JobEvent
from shared.jobs.schemas import with_our_video
from shared.media.storage import MediaStorage
from shared.media.urls import job_video_urls
from shared.webhooks import delivery, service
from shared.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookSubscription

BATCH = 500
# How long a sent message holds its delivery: longer than an attempt may take, so a delivery
# is sent again only when its message or its worker was lost.
LEASE = timedelta(seconds=delivery.TOTAL_SECONDS * 4)
# A retry due within this is sent as a countdown message; later ones by the dispatcher.
COUNTDOWN_HORIZON = 60.0
# Each wait of the schedule is stretched by up to this fraction at random, never shortened.
JITTER = 0.2

Send = tuple[uuid.UUID, int, float]  # (delivery id, attempts so far, countdown seconds)


@dataclass(frozen=True)
class Claimed:
    """An attempt to make: where, with which key, what."""

    url: str
    secret: str
    webhook_id: str
    body: bytes


@dataclass(frozen=True)
class MediaLinks:
    """How a body links our copy of the job's video, as `GET /v1/jobs/{id}` does: the
    storage's presigned URL, else our signed route under `base_url` (`PUBLIC_BASE_URL`; ""
    without it, which makes the route a path relative to the API's address, since a worker
    has no request to take the address from)."""

    storage: MediaStorage
    base_url: str
    secret_key: str


def media_links(settings: Settings, storage: MediaStorage) -> MediaLinks:
    return MediaLinks(storage, settings.public_base_url or "", settings.secret_key)


def job_view(session: Session, event: JobEvent, links: MediaLinks) -> dict[str, Any]:
    """The job as the event recorded it, shown as `GET /v1/jobs/{id}` shows a job: once its
    video is ingested, `result.video.url` is our copy's and `provider_url` the provider's."""
    result = event.data.get("result")
    if not result or not result.get("media_asset_id"):
        return event.data
    urls = job_video_urls(
        session.get_one(Job, event.job_id),
        storage=links.storage,
        base_url=links.base_url,
        secret_key=links.secret_key,
        result=result,
    )
    return {**event.data, "result": with_our_video(result, urls.content if urls else None)}


def body_of(event: JobEvent, data: dict[str, Any]) -> str:
    """The delivery's body: the event's type and time, and the job's view at that moment."""
    timestamp = event.created_at.isoformat().replace("+00:00", "Z")
    return json.dumps({"type": event.type, "timestamp": timestamp, "data": data})


def fan_out(*, session: Session, now: datetime, links: MediaLinks, limit: int = BATCH) -> int:
    """Take up to `limit` events no delivery has taken, oldest first, and write a delivery
    for each subscription of the event's account, and the job's own webhook, that wants its
    type (and existed when it happened); returns how many events were taken."""
    taken = session.scalars(
        select(JobEvent)
        .where(JobEvent.dispatched_at.is_(None))
        .order_by(JobEvent.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not taken:
        return 0
    # The accounts' subscriptions by account, and the jobs' own webhooks by job.
    subscriptions: dict[uuid.UUID, list[WebhookSubscription]] = defaultdict(list)
    for subscription in session.scalars(
        select(WebhookSubscription).where(
            or_(
                WebhookSubscription.account_id.in_({event.account_id for event in taken})
                & WebhookSubscription.job_id.is_(None),
                WebhookSubscription.job_id.in_({event.job_id for event in taken}),
            ),
            WebhookSubscription.disabled_at.is_(None),
        )
    ):
        subscriptions[subscription.job_id or subscription.account_id].append(subscription)
    bodies = {event.id: body_of(event, job_view(session, event, links)) for event in taken}
    rows = [
        {
            "id": uuid.uuid4(),
            "subscription_id": subscription.id,
            "event_id": event.id,
            "job_id": event.job_id,
            "seq": event.seq,
            "event_type": event.type,
            "body": bodies[event.id],
            "status": DeliveryStatus.PENDING,
            "attempts": 0,
            "retries": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event in taken
        for subscription in subscriptions[event.account_id] + subscriptions[event.job_id]
        if event.type in subscription.events
        # A job's own webhook was written with the job: it wants every event of it.
        and (subscription.job_id is not None or event.created_at >= subscription.created_at)
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    session.execute(
        update(JobEvent)
        .where(JobEvent.id.in_([event.id for event in taken]))
        .values(dispatched_at=now)
    )
    return len(taken)


def _first_pending() -> ColumnElement[bool]:
    """Whether no earlier event of the same job is pending for the same subscription."""
    earlier = aliased(WebhookDelivery)
    return ~exists().where(
        earlier.subscription_id == WebhookDelivery.subscription_id,
        earlier.job_id == WebhookDelivery.job_id,
        earlier.seq < WebhookDelivery.seq,
        earlier.status == DeliveryStatus.PENDING,
    )


def _sendable(now: datetime) -> list[ColumnElement[bool]]:
    return [
        WebhookDelivery.status == DeliveryStatus.PENDING,
        WebhookDelivery.next_attempt_at <= now,
        or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until < now),
        _first_pending(),
    ]


def claim_due(*, session: Session, now: datetime, limit: int = BATCH) -> list[Send]:
    """Lease up to `limit` deliveries that are due, unleased and first of their job's
    pending ones; returns what to send now."""
    due = session.scalars(
        select(WebhookDelivery)
        .where(*_sendable(now))
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    ).all()
    for row in due:
        row.leased_until = now + LEASE
    session.flush()
    return [(row.id, row.attempts, 0.0) for row in due]


def begin_attempt(
    *, session: Session, delivery_id: uuid.UUID, attempts: int, now: datetime
) -> Claimed | None:
    """Count an attempt of the delivery, if it is still the one the message was sent for
    (pending, `attempts` made so far) and none of its job's earlier events is pending; None
    otherwise (a duplicate or stale message: nothing to do)."""
    row = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
            WebhookDelivery.attempts == attempts,
            _first_pending(),
        )
        .with_for_update(of=WebhookDelivery)
    ).one_or_none()
    subscription = None if row is None else session.get(WebhookSubscription, row.subscription_id)
    if row is None or subscription is None:
        return None
    row.attempts += 1
    row.last_attempt_at = now
    row.leased_until = now + LEASE
    session.flush()
    return Claimed(
        url=subscription.url,
        secret=subscription.secret,
        webhook_id=str(row.id),
        body=row.body.encode(),
    )


def record_attempt(
    *,
    session: Session,
    delivery_id: uuid.UUID,
    attempts: int,
    attempt: delivery.Attempt,
    now: datetime,
    schedule: Sequence[float],
    disable_after: timedelta,
) -> list[Send]:
    """Record attempt number `attempts` of the delivery and decide what follows: delivered
    or given up, the job's next event for this subscription is sent now; a retryable failure
    waits its turn in `schedule` (failed once the schedule is spent). A subscription whose
    every attempt has failed for `disable_after` is disabled, and its pending deliveries
    fail. Returns what to send."""
    row = session.get(WebhookDelivery, delivery_id, with_for_update=True)
    if row is None or row.attempts != attempts or row.status != DeliveryStatus.PENDING:
        return []  # redelivered meanwhile: that attempt's record is the one that counts
    row.last_status_code = attempt.status_code
    row.last_error = attempt.error
    row.last_latency_ms = attempt.latency_ms
    row.leased_until = None
    if _note_health(
        session, row.subscription_id, attempt=attempt, now=now, disable_after=disable_after
    ):
        return []
    if not attempt.delivered and attempt.retryable and row.retries < len(schedule):
        wait = schedule[row.retries] * (1 + random.random() * JITTER)
        row.retries += 1
        row.next_attempt_at = now + timedelta(seconds=wait)
        if wait > COUNTDOWN_HORIZON:
            return []
        row.leased_until = row.next_attempt_at + LEASE
        return [(row.id, row.attempts, wait)]
    row.status = DeliveryStatus.DELIVERED if attempt.delivered else DeliveryStatus.FAILED
    row.next_attempt_at = None
    session.flush()
    following = session.scalars(
        select(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == row.subscription_id,
            WebhookDelivery.job_id == row.job_id,
            *_sendable(now),
        )
        .order_by(WebhookDelivery.seq)
        .limit(1)
        .with_for_update(skip_locked=True, of=WebhookDelivery)
    ).one_or_none()
    if following is None:
        return []
    following.leased_until = now + LEASE
    return [(following.id, following.attempts, 0.0)]


def _note_health(
    session: Session,
    subscription_id: uuid.UUID,
    *,
    attempt: delivery.Attempt,
    now: datetime,
    disable_after: timedelta,
) -> bool:
    """Track since when every attempt to the subscription has failed; disable it (and fail
    its pending deliveries) once that has lasted `disable_after`. Returns whether it was
    disabled now. Conditional updates: most attempts change nothing and lock nothing."""
    ours = WebhookSubscription.id == subscription_id
    if attempt.delivered:
        session.execute(
            update(WebhookSubscription)
            .where(ours, WebhookSubscription.failing_since.is_not(None))
            .values(failing_since=None)
        )
        return False
    session.execute(
        update(WebhookSubscription)
        .where(ours, WebhookSubscription.failing_since.is_(None))
        .values(failing_since=now)
    )
    last = attempt.status_code or attempt.error
    disabled = session.execute(
        update(WebhookSubscription)
        .where(
            ours,
            WebhookSubscription.disabled_at.is_(None),
            WebhookSubscription.failing_since <= now - disable_after,
        )
        .values(
            disabled_at=now,
            disabled_reason=(
                f"every delivery attempt failed for {disable_after.total_seconds():g} s "
                f"(the last: {last})"
            ),
        )
        .returning(WebhookSubscription.id)
    ).first()
    if disabled is None:
        return False
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.subscription_id == subscription_id,
            WebhookDelivery.status == DeliveryStatus.PENDING,
        )
        .values(
            status=DeliveryStatus.FAILED,
            next_attempt_at=None,
            leased_until=None,
            last_error="the subscription is disabled",
        )
    )
    return True


def list_for(
    *, session: Session, account_id: uuid.UUID, webhook_id: str, limit: int
) -> list[WebhookDelivery]:
    """A subscription's deliveries, newest first."""
    subscription = service.get(session=session, account_id=account_id, webhook_id=webhook_id)
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.subscription_id == subscription.id)
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.seq.desc())
            .limit(limit)
        )
    )


def redeliver(
    *, session: Session, account_id: uuid.UUID, delivery_id: str, now: datetime
) -> tuple[WebhookDelivery, list[Send]]:
    """Send the delivery again, the same body under the same `webhook-id`, with a fresh
    retry schedule: now, unless an earlier event of its job is still pending for the
    subscription (then in its turn)."""
    try:
        key = uuid.UUID(delivery_id)
    except ValueError:
        raise NotFound(f"No webhook delivery {echo(delivery_id)}.") from None
    row = session.scalars(
        select(WebhookDelivery)
        .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)
        .where(WebhookDelivery.id == key, WebhookSubscription.account_id == account_id)
        .with_for_update(of=WebhookDelivery)
    ).one_or_none()
    if row is None:
        raise NotFound(f"No webhook delivery {echo(delivery_id)}.")
    row.status = DeliveryStatus.PENDING
    row.retries = 0
    row.next_attempt_at = now
    row.leased_until = None
    session.flush()
    first = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.id == row.id,
            _first_pending(),
        )
    )
    if first is None:
        return row, []
    row.leased_until = now + LEASE
    session.flush()
    return row, [(row.id, row.attempts, 0.0)]
