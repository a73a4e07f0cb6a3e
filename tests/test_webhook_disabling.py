"""A customer webhook subscription whose every delivery attempt fails for
`WEBHOOK_DISABLE_AFTER_SECONDS` is disabled and says so; a PATCH turns it back on. The
attempts are recorded as the delivery task records them, at chosen times, on the real
database (no dispatcher runs in this module, so nothing else attempts these deliveries)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.db import utcnow
from shared.runtime import Runtime
from shared.webhooks import deliveries
from shared.webhooks.delivery import Attempt
from shared.webhooks.models import WebhookDelivery
from tests import conftest
from tests.helpers import fan_out_everything, generate

DISABLE_AFTER = timedelta(seconds=2)
SCHEDULE = (0.0,) * 5


@pytest.fixture
def api(client: FlaskClient) -> FlaskClient:
    """The tests' API accepts loopback webhook URLs (`WEBHOOK_ALLOW_PRIVATE_URLS=1`)."""
    return client


def _fanned_out(
    runtime: Runtime, api: FlaskClient, account: conftest.TestAccount, hook: str
) -> list[uuid.UUID]:
    """Submit a job, fan every event out; the subscription's deliveries."""
    generate(api, account, "A kite over dunes")
    with runtime.db.transaction() as session:
        fan_out_everything(runtime, session)
        return list(
            session.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.subscription_id == uuid.UUID(hook))
            )
        )


def _attempt(
    runtime: Runtime, delivery_id: uuid.UUID, made: int, at: datetime, status: int
) -> None:
    attempt = Attempt(status_code=status, error=None, latency_ms=1)
    with runtime.db.transaction() as session:
        claimed = deliveries.begin_attempt(
            session=session, delivery_id=delivery_id, attempts=made, now=at
        )
        assert claimed is not None
    with runtime.db.transaction() as session:
        deliveries.record_attempt(
            session=session,
            delivery_id=delivery_id,
            attempts=made + 1,
            attempt=attempt,
            now=at,
            schedule=SCHEDULE,
            disable_after=DISABLE_AFTER,
        )


def test_a_subscription_failing_for_the_set_time_is_disabled_until_re_enabled(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    created = api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["job.queued"]},
        headers=account.headers,
    ).get_json()
    path = f"/v1/webhooks/{created['id']}"
    assert created["status"] == "enabled" and created["disabled_reason"] is None
    (delivery_id,) = _fanned_out(runtime, api, account, created["id"])
    start = utcnow()
    _attempt(runtime, delivery_id, 0, start, 500)
    _attempt(runtime, delivery_id, 1, start + DISABLE_AFTER / 2, 500)
    assert api.get(path, headers=account.headers).get_json()["status"] == "enabled"
    _attempt(runtime, delivery_id, 2, start + DISABLE_AFTER, 503)
    read = api.get(path, headers=account.headers).get_json()
    assert read["status"] == "disabled"
    assert read["disabled_reason"] == "every delivery attempt failed for 2 s (the last: 503)"
    (row,) = api.get(f"{path}/deliveries", headers=account.headers).get_json()["data"]
    assert (row["status"], row["attempts"]) == ("failed", 3)
    assert row["last_error"] == "the subscription is disabled"
    # Disabled, it receives nothing new; enabled again, it does.
    assert len(_fanned_out(runtime, api, account, created["id"])) == 1
    enabled = api.patch(path, json={"status": "enabled"}, headers=account.headers)
    assert enabled.status_code == 200
    assert (enabled.get_json()["status"], enabled.get_json()["disabled_reason"]) == (
        "enabled",
        None,
    )
    assert len(_fanned_out(runtime, api, account, created["id"])) == 2


def test_a_delivered_attempt_restarts_the_clock(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    created = api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["job.queued"]},
        headers=account.headers,
    ).get_json()
    (first,) = _fanned_out(runtime, api, account, created["id"])
    start = utcnow()
    _attempt(runtime, first, 0, start, 500)
    _attempt(runtime, first, 1, start + DISABLE_AFTER / 2, 200)
    second = next(
        found for found in _fanned_out(runtime, api, account, created["id"]) if found != first
    )
    _attempt(runtime, second, 0, start + DISABLE_AFTER, 500)
    read = api.get(f"/v1/webhooks/{created['id']}", headers=account.headers).get_json()
    assert read["status"] == "enabled"


def test_only_enabled_can_be_set(api: FlaskClient, account: conftest.TestAccount) -> None:
    created = api.post(
        "/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "events": ["job.queued"]},
        headers=account.headers,
    ).get_json()
    path = f"/v1/webhooks/{created['id']}"
    for body, field in (({"status": "disabled"}, "status"), ({"status": None}, "status")):
        refused = api.patch(path, json=body, headers=account.headers)
        assert refused.status_code == 422
        assert field in refused.get_json()["error"]["fields"]
