"""At-least-once delivery, cancellation, deadlines and the dispatcher, on the real worker."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest
import redis
from kombu import Connection
from sqlalchemy import func, select, update

from services.worker import celery_app as names
from services.worker import redis_transport
from services.worker.dispatcher import dispatch
from shared.db import utcnow
from shared.jobs.models import Job
from shared.media.models import MediaAsset
from tests.helpers import balance, generate, get_job, job_entries, wait_for_job, wait_task_done
from tests.stack import redis_url
from tests.waiting import wait_for

# A dispatch "a minute from now": every step due by then (lost messages included) is sent.
LATER = timedelta(seconds=60)


def _job_row(runtime, job_id: str) -> Job:
    with runtime.db.transaction() as session:
        return session.get_one(Job, uuid.UUID(job_id))


def _simulator_requests(settings, prompt_marker: str) -> list[dict]:
    folder = settings.simulator_root / "requests"
    records = [json.loads(path.read_text()) for path in folder.glob("*.json")]
    return [r for r in records if prompt_marker in r["arguments"].get("prompt", "")]


def test_every_task_delivered_twice_charges_once_and_ingests_once(
    client, account, runtime, settings, celery_sender, worker_log
):
    marker = f"twice-{uuid.uuid4().hex[:8]}"
    accepted = generate(client, account, f"{marker} [sim latency=3]")
    job_id = accepted["job_id"]
    duplicates = [celery_sender.send_task(names.SUBMIT_JOB, args=(job_id,)) for _ in range(2)]

    running = wait_for(lambda: _job_row(runtime, job_id).poll_token, timeout=30)
    duplicates += [
        celery_sender.send_task(names.POLL_JOB, args=(job_id, running)) for _ in range(2)
    ]
    job = wait_for_job(client, account, job_id)
    assert job["status"] == "completed"
    duplicates += [
        celery_sender.send_task(name, args=(job_id,))
        for name in (names.SETTLE_CREDITS, names.INGEST_MEDIA) * 2
    ]
    for message in duplicates:
        wait_task_done(worker_log, message.id)

    assert len(_simulator_requests(settings, marker)) == 1  # submitted to the provider once
    assert job_entries(runtime, job_id) == {"hold": [350], "capture": [350]}
    with runtime.db.transaction() as session:
        assets = session.scalar(
            select(func.count()).where(MediaAsset.source_job_id == uuid.UUID(job_id))
        )
    assert assets == 1
    assert get_job(client, account, job_id) == job  # nothing moved after completion


def test_cancel_while_queued_releases_the_hold_and_never_submits(
    idle_app, account, runtime, settings, celery_sender, worker_log
):
    client = idle_app.test_client()
    marker = f"cancel-queued-{uuid.uuid4().hex[:8]}"
    accepted = generate(client, account, marker)
    assert get_job(client, account, accepted["job_id"])["status"] == "queued"

    cancelled = client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "cancelled"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "release": [350]}

    # The lost submit message turns up after all: the job stays cancelled.
    late = celery_sender.send_task(names.SUBMIT_JOB, args=(accepted["job_id"],))
    wait_task_done(worker_log, late.id)
    assert get_job(client, account, accepted["job_id"])["status"] == "cancelled"
    assert _simulator_requests(settings, marker) == []
    again = client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert again.status_code == 200  # cancelling twice answers the same


def test_cancel_while_running_asks_the_provider_and_ends_cancelled(
    client, account, runtime, settings
):
    marker = f"cancel-running-{uuid.uuid4().hex[:8]}"
    accepted = generate(client, account, f"{marker} [sim latency=20]")
    # Its first poll waits for the render (20 s): it is at the provider, not yet polled.
    wait_for(lambda: _job_row(runtime, accepted["job_id"]).started_at is not None, timeout=30)

    requested = client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert requested.status_code == 202
    assert requested.json["status"] == "processing"
    assert requested.json["cancel_requested_at"] is not None
    wait_for(lambda: _simulator_requests(settings, marker)[0]["cancelled"], timeout=30)
    # polled at once after the cancel, not at the end of its 20 s render
    job = wait_for_job(client, account, accepted["job_id"], timeout=10)
    assert job["status"] == "cancelled"
    assert job["credits_used"] is None
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "release": [350]}
    assert balance(runtime, account).available == 10000


def test_a_completed_job_cannot_be_cancelled(client, account):
    accepted = generate(client, account, "Quick one [sim latency=0.5]")
    wait_for_job(client, account, accepted["job_id"])
    refused = client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "not_cancellable"


def test_a_stalled_job_fails_at_its_deadline_and_is_released(make_app, account, runtime, settings):
    client = make_app(JOB_DEADLINE_SECONDS="3").test_client()
    marker = f"stall-{uuid.uuid4().hex[:8]}"
    accepted = generate(client, account, f"{marker} [sim stall latency=1]")
    job = wait_for_job(client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "release": [350]}
    wait_for(lambda: _simulator_requests(settings, marker)[0]["cancelled"], timeout=30)


def test_dispatcher_sends_a_lost_submit_again(idle_app, client, account, runtime, celery_sender):
    accepted = generate(idle_app.test_client(), account, "Lost in the broker [sim latency=1]")
    later = utcnow() + LATER
    assert dispatch(runtime, celery_sender, now=later) >= 1
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "completed"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "capture": [350]}


def test_dispatcher_replaces_a_lost_poll_loop(client, account, runtime, celery_sender):
    accepted = generate(client, account, "Lost poll loop [sim latency=4]")
    job_id = uuid.UUID(accepted["job_id"])
    wait_for(lambda: _job_row(runtime, accepted["job_id"]).poll_count > 0, timeout=30)
    with runtime.db.transaction() as session:  # the live loop's next message is now fenced out
        session.execute(update(Job).where(Job.id == job_id).values(poll_token="lost"))
    wait_for(lambda: _job_row(runtime, accepted["job_id"]).poll_token == "lost", timeout=5)
    later = utcnow() + LATER
    dispatch(runtime, celery_sender, now=later)
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "completed"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "capture": [350]}


def test_dispatcher_fails_overdue_queued_jobs(make_app, account, runtime, celery_sender):
    client = make_app(JOB_DEADLINE_SECONDS="60", CELERY_QUEUE="nobody-reads-this").test_client()
    accepted = generate(client, account, "Never picked up")
    dispatch(runtime, celery_sender, now=utcnow() + timedelta(seconds=61))
    job = get_job(client, account, accepted["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "timeout"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "release": [350]}


def test_broker_down_at_submit_still_accepts_and_the_dispatcher_sends_it_later(
    make_app, client, account, runtime, celery_sender
):
    broken = make_app(CELERY_BROKER_URL="redis://127.0.0.1:1/0").test_client()
    accepted = generate(broken, account, "Broker outage [sim latency=0.5]")
    assert get_job(client, account, accepted["job_id"])["status"] == "queued"
    later = utcnow() + LATER
    dispatch(runtime, celery_sender, now=later)
    assert wait_for_job(client, account, accepted["job_id"])["status"] == "completed"


def test_a_closed_broker_channel_reports_a_connection_error_not_a_crash() -> None:
    """Teardown after a Redis restart may ask a channel kombu already closed for its
    connection parameters: a connection error (ignored there), never the AttributeError
    that ended the worker (services/worker/redis_transport.py)."""
    redis_transport.install()
    with Connection(redis_url(11)) as connection:
        channel = connection.channel()
        channel.close()
        assert channel.connection is None
        with pytest.raises(redis.ConnectionError):
            channel._connparams()
