"""The customer webhooks' metrics: each recorded attempt counted by what it came to
(delivered, retried, failed), a delivery's lag from its event, and the live gauge of the
oldest job event still owed to a customer (not fanned out, or due and not delivered).

Attempts are recorded here as the delivery task records them, with the receiver's answer
given rather than fetched: what is measured is the recording, not the POST."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import select, update

from shared import metrics
from shared.db import utcnow
from shared.jobs.models import JobEvent
from shared.runtime import Runtime
from shared.webhooks import deliveries
from shared.webhooks.delivery import Attempt
from shared.webhooks.models import WebhookDelivery, WebhookSubscription
from tests import conftest
from tests.helpers import fan_out_everything, generate

# Older than anything the tests leave behind: the gauge's value is this event's age.
BACKDATED = timedelta(days=100)
SCHEDULE = (60.0,)


def _outcomes() -> dict[str, float]:
    return {
        outcome: REGISTRY.get_sample_value("naive_webhook_deliveries_total", {"outcome": outcome})
        or 0.0
        for outcome in ("delivered", "retried", "failed")
    }


def _lag() -> tuple[float, float]:
    labels = {"event": "job.queued"}
    count = REGISTRY.get_sample_value("naive_webhook_delivery_lag_seconds_count", labels) or 0.0
    total = REGISTRY.get_sample_value("naive_webhook_delivery_lag_seconds_sum", labels) or 0.0
    return count, total


def _oldest_undelivered(runtime: Runtime) -> float:
    (family,) = metrics.WebhookBacklogCollector(runtime.db).collect()
    (sample,) = family.samples
    return sample.value


def _backdated_delivery(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> tuple[uuid.UUID, float]:
    """A subscription to `job.queued` and a job whose event is BACKDATED old, fanned out;
    returns its delivery and the gauge's value before the fan-out."""
    answer = api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["job.queued"]},
        headers=account.headers,
    )
    assert answer.status_code == 201, answer.get_json()
    job_id = uuid.UUID(generate(api, account, "A lighthouse at dusk")["job_id"])
    old = utcnow() - BACKDATED
    with runtime.db.transaction() as session:
        session.execute(
            update(WebhookSubscription)
            .where(WebhookSubscription.id == uuid.UUID(answer.get_json()["id"]))
            .values(created_at=old - timedelta(days=1))
        )
        event_id = session.execute(
            update(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.type == "job.queued")
            .values(created_at=old)
            .returning(JobEvent.id)
        ).scalar_one()
    before_fan_out = _oldest_undelivered(runtime)
    with runtime.db.transaction() as session:
        fan_out_everything(runtime, session)
        delivery_id = session.scalars(
            select(WebhookDelivery.id).where(WebhookDelivery.event_id == event_id)
        ).one()
    return delivery_id, before_fan_out


def _attempt(runtime: Runtime, delivery_id: uuid.UUID, made: int, status: int) -> None:
    """Attempt number `made + 1`, recorded and observed as the delivery task does it."""
    attempt = Attempt(status_code=status, error=None, latency_ms=3)
    with runtime.db.transaction() as session:
        claimed = deliveries.begin_attempt(
            session=session, delivery_id=delivery_id, attempts=made, now=utcnow()
        )
        assert claimed is not None
    with runtime.db.transaction() as session:
        deliveries.record_attempt(
            session=session,
            delivery_id=delivery_id,
            attempts=made + 1,
            attempt=attempt,
            now=utcnow(),
            schedule=SCHEDULE,
            disable_after=timedelta(days=5),
        )
        metrics.observe_webhook_attempt(
            session=session, delivery_id=delivery_id, attempts=made + 1, attempt=attempt
        )


def _delta(before: dict[str, float]) -> dict[str, Any]:
    after = _outcomes()
    return {outcome: after[outcome] - before[outcome] for outcome in after}


def test_the_gauge_reports_the_oldest_undelivered_event_until_it_is_delivered(
    client: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    old = BACKDATED.total_seconds()
    delivery_id, before_fan_out = _backdated_delivery(client, account, runtime)
    assert before_fan_out >= old  # not yet fanned out
    assert _oldest_undelivered(runtime) >= old  # fanned out, due, not delivered
    outcomes, (count, total) = _outcomes(), _lag()

    _attempt(runtime, delivery_id, 0, 200)

    assert _delta(outcomes) == {"delivered": 1, "retried": 0, "failed": 0}
    lag_count, lag_total = _lag()
    assert lag_count == count + 1 and lag_total - total >= old
    assert _oldest_undelivered(runtime) < old


def test_a_retryable_answer_counts_as_retried_and_a_refusal_as_failed(
    client: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    delivery_id, _ = _backdated_delivery(client, account, runtime)
    outcomes, lag = _outcomes(), _lag()

    _attempt(runtime, delivery_id, 0, 503)
    assert _delta(outcomes) == {"delivered": 0, "retried": 1, "failed": 0}
    # Waiting out its backoff, the delivery is not backlog.
    assert _oldest_undelivered(runtime) < BACKDATED.total_seconds()
    with runtime.db.transaction() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow(), leased_until=None)
        )
    _attempt(runtime, delivery_id, 1, 410)

    assert _delta(outcomes) == {"delivered": 0, "retried": 1, "failed": 1}
    assert _lag() == lag  # only deliveries are timed
