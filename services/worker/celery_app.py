"""The Celery app factory, shared by the worker, beat and the API (which only sends).

Messages carry a job id and nothing else; PostgreSQL holds the job. Tasks are
acknowledged late and rejected when their worker dies, so a killed task is delivered
again; every task is safe to run twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import redis
from celery import Celery
from kombu import Queue
from kombu.exceptions import KombuError
from sqlalchemy.orm import Session

from services.worker import filesystem_transport, redis_transport
from services.worker.redis_publish import RedisPublisher
from shared.config import Settings
from shared.db import after_commit
from shared.jobs.machine import Step
from shared.jobs.models import Job
from shared.jobs.pacing import poll_batches

log = logging.getLogger(__name__)

SUBMIT_JOB = "naive.submit_job"
POLL_JOB = "naive.poll_job"
POLL_BATCH = "naive.poll_batch"
SETTLE_CREDITS = "naive.settle_credits"
INGEST_MEDIA = "naive.ingest_media"
CANCEL_AT_PROVIDER = "naive.cancel_at_provider"
DISPATCH = "naive.dispatch"
REFRESH_CATALOG = "naive.refresh_catalog"
DELIVER_WEBHOOK = "naive.deliver_webhook"
ADMIT_JOBS = "naive.admit_jobs"


# How messages are delivered: JSON ids only, acknowledged late, redelivered when a worker
# dies. The benchmarks' plain Celery baseline uses the same, so the comparison is fair.
DELIVERY_OPTIONS: dict[str, Any] = {
    "task_serializer": "json",
    "accept_content": ["json"],
    "task_ignore_result": True,
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "broker_connection_retry_on_startup": True,
    "worker_hijack_root_logger": False,
}


def _transport_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_is_filesystem:
        queue = str(settings.broker_folder / "queue")
        return {
            "data_folder_in": queue,
            "data_folder_out": queue,
            "processed_folder": str(settings.broker_folder / "processed"),
            "store_processed": False,
            # kombu keeps its exchange tables in `control_folder`, by default `control/` under
            # the working directory: that would write broker state into the repository.
            "control_folder": str(settings.broker_folder / "control"),
            # Listing a local folder is cheap: a message waits at most 0.1 s (1 s by default).
            "polling_interval": 0.1,
        }
    # Redis redelivers a message not acknowledged within this window (countdowns included).
    return {"visibility_timeout": settings.visibility_timeout_seconds}


def _beat_schedule(settings: Settings) -> dict[str, Any]:
    schedule: dict[str, Any] = {
        "dispatch": {
            "task": DISPATCH,
            "schedule": settings.dispatch_interval_seconds,
            # A dispatch that waited in the queue for several intervals is dropped: the
            # next one claims the same jobs.
            "options": {"expires": settings.dispatch_interval_seconds * 5},
        },
    }
    if settings.fal_key:  # the live catalog needs fal's platform API
        schedule["refresh-catalog"] = {
            "task": REFRESH_CATALOG,
            "schedule": settings.catalog_ttl_seconds / 2,
        }
    return schedule


def make_celery(settings: Settings) -> Celery:
    if settings.broker_is_filesystem:
        settings.ensure_local_dirs()  # kombu lists the queue folder as the worker starts
        # kombu's filesystem channel, patched so a message is never read half written.
        filesystem_transport.install()
    else:
        # kombu's Redis channel, patched so a worker survives a Redis restart.
        redis_transport.install()
    app = Celery(
        "naive",
        broker=settings.broker_url,
        include=[
            "services.worker.tasks",
            "services.worker.poll_tasks",
            "services.worker.webhook_tasks",
        ],
    )
    app.conf.update(
        DELIVERY_OPTIONS,
        task_default_queue=settings.celery_queue,
        # kombu's Redis channel takes from its queues in turn: a poll waits behind at most
        # one completion per free worker process, however many renders just finished.
        task_queues=[Queue(name) for name in settings.celery_queues],
        task_routes={
            SETTLE_CREDITS: {"queue": settings.completions_queue},
            INGEST_MEDIA: {"queue": settings.completions_queue},
            # The dispatcher's tick sends the parked and the overdue polls: behind a backlog
            # of polls it would only make them later.
            DISPATCH: {"queue": settings.completions_queue},
            # A free slot at the provider goes to the next waiting job at once.
            ADMIT_JOBS: {"queue": settings.completions_queue},
            DELIVER_WEBHOOK: {"queue": settings.webhooks_queue},
        },
        broker_transport_options=_transport_options(settings),
        beat_schedule=_beat_schedule(settings),
    )
    app.naive_settings = settings  # read by the tasks' base class
    app.naive_publisher = (
        None if settings.broker_is_filesystem else RedisPublisher(app, settings.broker_url)
    )
    return app


# The task that carries out each step of the job state machine (a poll the dispatcher
# sends goes in a batch: `send_poll_batches`).
STEP_TASKS = {
    Step.SUBMIT: SUBMIT_JOB,
    Step.SETTLE: SETTLE_CREDITS,
    Step.INGEST: INGEST_MEDIA,
}


def send_after_commit(
    session: Session, celery: Celery, task: str, *args: str | list[str], countdown: float = 0
) -> None:
    """The one way to send a task: once the transaction commits, never for a rollback.

    A broker outage does not fail the caller: the job is stored, and the dispatcher sends
    its message when the broker is back.
    """

    publisher: RedisPublisher | None = celery.naive_publisher

    def send() -> None:
        try:
            if publisher is not None:
                publisher.send(task, args, countdown=countdown)
            else:
                celery.send_task(task, args=args, countdown=countdown)
        except (KombuError, redis.RedisError):
            log.warning("broker unavailable: %s %s left to the dispatcher", task, args[:1])

    after_commit(session, send)


def send_poll_batches(
    session: Session,
    celery: Celery,
    token: str,
    due: Sequence[tuple[uuid.UUID, float]],
    *,
    size: int,
) -> None:
    """Send the polls of jobs whose rows carry `token`, each due in the given seconds
    (within the poll horizon), as `poll_batch` messages of at most `size` jobs, after the
    commit; `pacing.poll_batches` groups them and sets each message's countdown."""
    for job_ids, countdown in poll_batches(due, size=size):
        ids = [str(job_id) for job_id in job_ids]
        send_after_commit(session, celery, POLL_BATCH, token, ids, countdown=countdown)


def send_callback_follow_up(
    session: Session, celery: Celery, outcome: str, job: Job | None
) -> None:
    """The step a provider callback's outcome calls for, after the commit: settlement for a
    delivered job, a poll now (with the job's new token) for one whose callback carried no
    usable video."""
    if job is None:
        return
    if outcome == "delivered":
        send_after_commit(session, celery, SETTLE_CREDITS, str(job.id))
    elif outcome == "polling" and job.poll_token is not None:
        send_after_commit(session, celery, POLL_JOB, str(job.id), job.poll_token)


def send_webhook_deliveries(
    session: Session, celery: Celery, sends: Iterable[tuple[uuid.UUID, int, float]]
) -> None:
    """Each delivery's attempt, after the commit: its id and the attempts made so far (which
    fences a duplicate message), with its countdown."""
    for delivery_id, attempts, countdown in sends:
        send_after_commit(
            session, celery, DELIVER_WEBHOOK, str(delivery_id), str(attempts), countdown=countdown
        )
