"""`services.worker.redis_publish.RedisPublisher` writes the message kombu's Redis transport
writes for the same send through Celery, a countdown's `eta` included."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import pytest
import redis
from celery import Celery

from services.worker.celery_app import POLL_JOB, make_celery
from shared.config import load_settings

# Differ per message (ids, the sender), or not set by the publisher (results are ignored).
_PER_MESSAGE = {"id", "task_id", "root_id", "origin", "correlation_id", "delivery_tag", "reply_to"}
# Celery writes the task's own time limits and ignore_result when the sending process has
# imported the task (a signature's send), and None otherwise; the publisher always writes
# None. A worker reads None as the task's own (celery/worker/request.py: `time_limit or
# task.time_limit`, `ignore_result is None` → `task.ignore_result`): the same run.
_TASKS_OWN = {"timelimit", "ignore_result"}


@pytest.fixture
def celery(test_env: dict[str, str]) -> Iterator[Celery]:
    queue = f"{test_env['CELERY_QUEUE']}-publish-{uuid.uuid4().hex[:8]}"
    settings = load_settings({**test_env, "CELERY_QUEUE": queue})
    app = make_celery(settings)
    yield app
    client = redis.Redis.from_url(settings.broker_url)
    client.delete(*settings.celery_queues)
    client.close()


def _sent(celery: Celery, task: str, send: Callable[[], None]) -> dict[str, Any]:
    """The one message `send` put on the task's queue, its body decoded."""
    queue = celery.naive_publisher._queue(task)
    client = redis.Redis.from_url(celery.conf.broker_url)
    send()
    raw = client.rpop(queue)
    client.close()
    assert raw is not None
    message = json.loads(raw)
    message["body"] = json.loads(base64.b64decode(message["body"]))
    return message


def _shape(value: Any) -> Any:
    """The message without what differs between two sends of the same task."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items() if k not in _PER_MESSAGE | _TASKS_OWN}
    if isinstance(value, list):
        return [_shape(v) for v in value]
    return value


def test_a_countdown_is_celerys_eta(celery: Celery) -> None:
    args = (str(uuid.uuid4()), "token")
    ours = _sent(celery, POLL_JOB, lambda: celery.naive_publisher.send(POLL_JOB, args, countdown=5))
    theirs = _sent(celery, POLL_JOB, lambda: celery.send_task(POLL_JOB, args=args, countdown=5))
    ours_eta = datetime.fromisoformat(ours["headers"].pop("eta"))
    theirs_eta = datetime.fromisoformat(theirs["headers"].pop("eta"))
    assert abs((ours_eta - theirs_eta).total_seconds()) < 1
    theirs["headers"]["argsrepr"] = repr(args)  # Celery's saferepr of the same tuple
    assert _shape(ours) == _shape(theirs)
