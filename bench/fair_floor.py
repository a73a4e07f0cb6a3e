"""The fair floor for bench.pipeline_throughput: the product's pipeline with the least
database work a durable one can do, and nothing else taken away.

    celery -A bench.fair_floor worker --concurrency K --without-gossip --without-mingle

The same four tasks (submit → poll → chain(settle, ingest)) on the same broker, with the
product's delivery settings, queues and kombu transport; the same provider calls (the
simulator, through the product's provider), the same countdown before the first poll
(`shared.jobs.pacing.poll_wait`), the same ingest (`shared.media.ingest.ingest_video`:
the copy into media storage, the PyAV probe, the poster) on the same `jobs` rows, written
by `create_job` as the API writes them. What it leaves out is everything but the
statements: one psycopg connection per process, hand-written SQL, no ORM, no logging,
no metrics, no dispatcher. Six transactions (eight statements) per job:

    submit  1. record the attempt (returning what the call needs)  2. record the request
    poll    3. the delivery, fenced by the poll token (no claim before the call)
    settle  4. the status and the capture
    ingest  5. claim (returning what the copy needs)  6. the asset and the completion

Settings from the environment, as the product's worker reads them (DATABASE_URL,
CELERY_BROKER_URL, CELERY_QUEUE, NAIVE_DATA_DIR, POLL_INITIAL_SECONDS, …).
"""

from __future__ import annotations

import functools
import json
import secrets
import uuid
from typing import Any

import psycopg
from celery import Celery, chain
from celery.signals import worker_process_init
from kombu import Queue

from services.worker import redis_transport
from services.worker.celery_app import DELIVERY_OPTIONS
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
ACTIVE = ("submitted", "running")


@functools.cache
def _runtime() -> Runtime:
    return Runtime(settings)


@functools.cache
def _db() -> psycopg.Connection[Any]:
    url = settings.database_url.replace("postgresql+psycopg://", "postgresql://")
    return psycopg.connect(url)


@worker_process_init.connect
def _fresh_connections_after_fork(**_: Any) -> None:
    _db.cache_clear()
    _runtime.cache_clear()


def _one(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """One statement in its own transaction; its first row."""
    with _db().transaction(), _db().cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() if cursor.description else None


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
    _one(
        "UPDATE jobs SET status = 'submitted', provider_request_id = %s, poll_token = %s, "
        "started_at = now(), due_at = now() + make_interval(secs => %s) "
        "WHERE id = %s AND status = 'queued'",
        (request_id, token, wait, job_id),
    )
    poll.apply_async((job_id, token, row[0], request_id), countdown=wait)


@app.task(name="floor.poll")
def poll(job_id: str, token: str, model_id: str, request_id: str) -> None:
    model = catalog.get_model(model_id)
    provider = _runtime().provider
    if provider.status(model, request_id).state != "completed":  # not with instant renders
        poll.apply_async((job_id, token, model_id, request_id), countdown=settings.poll_max_seconds)
        return
    result = provider.result(model, request_id)
    delivered = _one(
        "UPDATE jobs SET status = 'settling', progress = 100, provider_result = %s, "
        "provider_completed_at = now(), due_at = now() "
        "WHERE id = %s AND poll_token = %s AND status = ANY(%s) RETURNING id",
        (json.dumps(result.to_dict()), job_id, token, list(ACTIVE)),
    )
    if delivered is not None:
        chain(settle.si(job_id), ingest.si(job_id)).apply_async()


@app.task(name="floor.settle")
def settle(job_id: str) -> None:
    with _db().transaction(), _db().cursor() as cursor:
        cursor.execute(
            "UPDATE jobs SET status = 'ingesting', credits_used = estimated_credits, "
            "due_at = now() WHERE id = %s AND status = 'settling' "
            "RETURNING account_id, estimated_credits",
            (job_id,),
        )
        row = cursor.fetchone()
        if row is not None:
            cursor.execute(
                "INSERT INTO ledger_entries (id, account_id, job_id, kind, amount, created_at) "
                "VALUES (%s, %s, %s, 'capture', %s, now())",
                (uuid.uuid4(), row[0], job_id, row[1]),
            )


@app.task(name="floor.ingest")
def ingest(job_id: str) -> None:
    row = _one(
        "UPDATE jobs SET due_at = now() + interval '60 s' "
        "WHERE id = %s AND status = 'ingesting' "
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
        cursor.execute(
            "UPDATE jobs SET status = 'completed', result = %s, completed_at = now(), "
            "due_at = NULL WHERE id = %s AND status = 'ingesting'",
            (json.dumps(completed), job_id),
        )
