"""The fair floor for bench.pipeline_throughput: the product's pipeline with the least
work its guarantees need, and nothing else taken away.

    celery -A bench.fair_floor worker --concurrency K --without-gossip --without-mingle

The same four tasks (submit → poll → settle → ingest) on the same broker, with the
product's delivery settings, queues and kombu transport; the same provider calls (the
simulator, through the product's provider), the same countdown before the first poll
(`shared.jobs.pacing.poll_wait`), the same ingest (`shared.media.ingest.ingest_video`:
the copy into media storage, the PyAV probe, the poster) on the same `jobs` rows, written
by `create_job` as the API writes them. Each step is sent as the product sends it: one
LPUSH of a Celery message after the commit that makes it due (`RedisPublisher`).

It keeps what the product guarantees, each at its least cost:
- at least once, in parallel: every step claims its job with one conditional update
  before it acts (the submit's attempt, the poll's token, the ingest's lease), so a
  duplicate message does nothing twice;
- the outbox: every change a customer can see writes its event (the job's columns as
  JSON, numbered by `event_seq`) in the transaction that makes it: processing, delivered,
  charged, and completed with its asset (two rows in one statement);
- the charge recorded before ingest; the asset once per job.

What it leaves out is everything but the statements: one psycopg connection per process,
hand-written SQL, no ORM, no logging, no metrics, no dispatcher. Seven transactions
(thirteen statements) per job, as the product:

    submit  1. claim the attempt   2. the request, and its event
    poll    3. claim the token     4. the delivery, and its event
    settle  5. the status, the capture and its event
    ingest  6. claim the lease     7. the asset, the completion and its two events

Settings from the environment, as the product's worker reads them (DATABASE_URL,
CELERY_BROKER_URL, CELERY_QUEUE, NAIVE_DATA_DIR, POLL_INITIAL_SECONDS, …).
"""

from __future__ import annotations

import functools
import gc
import json
import secrets
import uuid
from typing import Any

import psycopg
from celery import Celery
from celery.signals import worker_init, worker_process_init
from kombu import Queue

from services.worker import redis_transport
from services.worker.celery_app import DELIVERY_OPTIONS
from services.worker.redis_publish import RedisPublisher
from shared import catalog
from shared.config import load_settings
from shared.jobs.pacing import pacing_seconds, poll_wait
from shared.media.ingest import ingest_video
from shared.providers.base import provider_arguments
from shared.runtime import Runtime

settings = load_settings()
redis_transport.install()
app = Celery("floor", broker=settings.broker_url)
app.conf.update(
    DELIVERY_OPTIONS,
    task_default_queue=settings.celery_queue,
    task_queues=[Queue(name) for name in settings.celery_queues],
    task_routes={
        "floor.settle": {"queue": settings.completions_queue},
        "floor.ingest": {"queue": settings.completions_queue},
    },
    broker_transport_options={"visibility_timeout": settings.visibility_timeout_seconds},
)
ACTIVE = ["submitted", "running"]
# What an event carries: the job's columns its public view shows.
VIEW = (
    "id, status, progress, queue_position, model, input, result, error, credits_used, "
    "estimated_credits, estimated_seconds, provider_request_id, cancel_requested_at, "
    "provider_logs, created_at, started_at, completed_at, metadata, batch_id, quote_id"
)
VIEW_NAMES = [name.strip() for name in VIEW.split(",")]
EVENT = (
    "INSERT INTO job_events (job_id, account_id, seq, type, created_at, data) "
    "VALUES (%s, %s, %s, %s, now(), %s)"
)  # one row; `_events` adds more


@functools.cache
def _runtime() -> Runtime:
    return Runtime(settings)


@functools.cache
def _db(autocommit: bool = False) -> psycopg.Connection[Any]:
    """This process's connection for transactions, or (`autocommit`) for claims: one
    statement each, no BEGIN and COMMIT, as the product runs them."""
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url, autocommit=autocommit)


@functools.cache
def _publisher() -> RedisPublisher:
    return RedisPublisher(app, settings.broker_url)


@worker_init.connect
def _freeze_startup_objects(**_: Any) -> None:
    gc.freeze()  # as the product's worker does (services/worker/lifecycle.py)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    _db.cache_clear()
    _runtime.cache_clear()
    _publisher.cache_clear()


def _one(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A claim: one statement on its own; its row."""
    return _db(autocommit=True).execute(sql, params).fetchone()


@functools.cache
def _events(count: int) -> str:
    """An INSERT of `count` events of one job."""
    return EVENT + ", (%s, %s, %s, %s, now(), %s)" * (count - 1)


def _moved(cursor: psycopg.Cursor[Any], sql: str, params: tuple[Any, ...], *kinds: str) -> Any:
    """A move that a customer sees: `sql` (an UPDATE bumping `event_seq` by len(kinds),
    returning `account_id, event_seq` and the view's columns), then its events in one
    statement. The row it returned, or None."""
    cursor.execute(sql, params)
    row = cursor.fetchone()
    if row is None:
        return None
    account_id, seq, *view = row
    data = json.dumps(dict(zip(VIEW_NAMES, view, strict=True)), default=str)
    job_id = view[0]
    first = seq - len(kinds) + 1
    rows = [(job_id, account_id, first + i, kind, data) for i, kind in enumerate(kinds)]
    cursor.execute(_events(len(kinds)), [value for event in rows for value in event])
    return row


def _send(task: str, *args: str, countdown: float = 0) -> None:
    _publisher().send(task, args, countdown=countdown)


@app.task(name="floor.submit")
def submit(job_id: str) -> None:
    row = _one(
        "UPDATE jobs SET submit_attempted_at = now(), due_at = now() + interval '30 s' "
        "WHERE id = %s AND status = 'queued' AND submit_attempted_at IS NULL "
        "RETURNING model, input",
        (job_id,),
    )
    if row is None:
        return
    model = catalog.get_model(row[0])
    provider = _runtime().provider
    arguments = provider_arguments(model, row[1])
    request_id = provider.submit(model, arguments)
    expected = pacing_seconds(
        provider.render_seconds(model, arguments),
        catalog_seconds=model.estimated_seconds,
        settings=settings,
    )
    wait = poll_wait(
        settings,
        expected_seconds=expected,
        elapsed_seconds=0,
        polls_past_expected=0,
        queue_position=None,
        webhooks_enabled=False,
    )
    token = secrets.token_hex(8)
    with _db().transaction(), _db().cursor() as cursor:
        moved = _moved(
            cursor,
            "UPDATE jobs SET status = 'submitted', provider_request_id = %s, poll_token = %s, "
            "started_at = now(), due_at = now() + make_interval(secs => %s), "
            f"event_seq = event_seq + 1 WHERE id = %s AND status = 'queued' "
            f"RETURNING account_id, event_seq, {VIEW}",
            (request_id, token, wait, job_id),
            "job.processing",
        )
    if moved is not None:
        _send("floor.poll", job_id, token, countdown=wait)


@app.task(name="floor.poll")
def poll(job_id: str, token: str) -> None:
    claimed = secrets.token_hex(8)
    row = _one(
        "UPDATE jobs SET poll_token = %s, poll_count = poll_count + 1, "
        "due_at = now() + interval '10 s' WHERE id = %s AND poll_token = %s "
        "AND status = ANY(%s) RETURNING model, provider_request_id",
        (claimed, job_id, token, ACTIVE),
    )
    if row is None:
        return
    model = catalog.get_model(row[0])
    provider = _runtime().provider
    if provider.status(model, row[1]).state != "completed":  # not with instant renders
        _send("floor.poll", job_id, claimed, countdown=settings.poll_max_seconds)
        return
    result = provider.result(model, row[1])
    with _db().transaction(), _db().cursor() as cursor:
        moved = _moved(
            cursor,
            "UPDATE jobs SET status = 'settling', progress = 100, provider_result = %s, "
            "provider_completed_at = now(), due_at = now(), event_seq = event_seq + 1 "
            "WHERE id = %s AND poll_token = %s AND status = ANY(%s) "
            f"RETURNING account_id, event_seq, {VIEW}",
            (json.dumps(result.to_dict()), job_id, claimed, ACTIVE),
            "job.processing",
        )
    if moved is not None:
        _send("floor.settle", job_id)


@app.task(name="floor.settle")
def settle(job_id: str) -> None:
    with _db().transaction(), _db().cursor() as cursor:
        moved = _moved(
            cursor,
            "UPDATE jobs SET status = 'ingesting', credits_used = estimated_credits, "
            "due_at = now(), event_seq = event_seq + 1 WHERE id = %s AND status = 'settling' "
            f"RETURNING account_id, event_seq, {VIEW}",
            (job_id,),
            "job.processing",
        )
        if moved is not None:
            cursor.execute(
                "INSERT INTO ledger_entries (id, account_id, job_id, kind, amount, created_at) "
                "VALUES (%s, %s, %s, 'capture', %s, now())",
                (uuid.uuid4(), moved[0], job_id, moved[2 + VIEW_NAMES.index("estimated_credits")]),
            )
    if moved is not None:
        _send("floor.ingest", job_id)


@app.task(name="floor.ingest")
def ingest(job_id: str) -> None:
    row = _one(
        "UPDATE jobs SET ingest_started_at = now(), due_at = now() + interval '60 s' "
        "WHERE id = %s AND status = 'ingesting' AND (ingest_started_at IS NULL "
        "OR ingest_started_at <= now() - interval '60 s') "
        "RETURNING account_id, provider_result, input, model",
        (job_id,),
    )
    if row is None:
        return
    account_id, result, job_input, model_id = row
    runtime = _runtime()
    video = ingest_video(
        storage=runtime.storage,
        url=result["video"]["url"],
        account_id=account_id,
        job_id=uuid.UUID(job_id),
        local_root=settings.simulator_root,
    )
    prompt = str(job_input.get("prompt") or "")
    asset_id = uuid.uuid4()
    with _db().transaction(), _db().cursor() as cursor:
        cursor.execute(
            "INSERT INTO media_assets (id, account_id, storage_key, poster_key, filename, "
            "content_type, size_bytes, duration_seconds, width, height, source_type, "
            "source_job_id, source_url, title, tags, created_at) VALUES (%s, %s, %s, %s, %s, "
            "%s, %s, %s, %s, %s, 'video_generation', %s, %s, %s, %s, now()) "
            "ON CONFLICT (source_job_id) DO NOTHING",
            (
                asset_id,
                account_id,
                video.storage_key,
                video.poster_key,
                f"video-{job_id[:8]}.mp4",
                video.info.content_type,
                video.size_bytes,
                video.info.duration_seconds,
                video.info.width,
                video.info.height,
                job_id,
                result["video"]["url"],
                prompt[:300] or None,
                json.dumps([model_id]),
            ),
        )
        completed = {**result, "media_asset_id": str(asset_id)}
        _moved(
            cursor,
            "UPDATE jobs SET status = 'completed', result = %s, completed_at = now(), "
            "due_at = NULL, event_seq = event_seq + 2 WHERE id = %s AND status = 'ingesting' "
            f"RETURNING account_id, event_seq, {VIEW}",
            (json.dumps(completed), job_id),
            "asset.ingested",
            "job.completed",
        )
