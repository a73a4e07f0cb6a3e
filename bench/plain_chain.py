"""The floor for bench.pipeline_throughput: a plain Celery app whose "job" is a chain of
four no-op tasks (submit, poll, settle, ingest), on the same broker with the same
delivery settings as the product's app (JSON, acks late, reject on worker lost,
prefetch 1, no results, the same visibility timeout).

    celery -A bench.plain_chain worker --concurrency K --without-gossip --without-mingle

Settings from the environment: CELERY_BROKER_URL, CELERY_QUEUE, and BENCH_DONE_KEY, a
Redis list the last task of each chain pushes its finishing time onto.
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery, chain

from services.worker.celery_app import DELIVERY_OPTIONS

app = Celery("plain", broker=os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/7"))
app.conf.update(
    DELIVERY_OPTIONS,
    task_default_queue=os.environ.get("CELERY_QUEUE", "bench-plain"),
    broker_transport_options={"visibility_timeout": 3600},
)
_done: redis.Redis | None = None


@app.task(name="plain.submit")
def submit(job_id: str) -> None:
    return None


@app.task(name="plain.poll")
def poll(job_id: str) -> None:
    return None


@app.task(name="plain.settle")
def settle(job_id: str) -> None:
    return None


@app.task(name="plain.ingest")
def ingest(job_id: str) -> None:
    global _done
    if _done is None:
        _done = redis.Redis.from_url(app.conf.broker_url)
    _done.rpush(os.environ.get("BENCH_DONE_KEY", "bench-plain-done"), repr(time.time()))


def job(job_id: str) -> chain:
    """One job's worth of messages: four tasks, each sent when the one before ends."""
    return chain(submit.si(job_id), poll.si(job_id), settle.si(job_id), ingest.si(job_id))
