"""Recovery in seconds: after a fault, every job moves again within 5 s of when it was due.

Each test runs the real processes (API, a Celery worker, the `beat` process of the
Procfile, whose dispatcher re-sends overdue steps) against a Redis of its own, injects a
fault mid-flight, and times, from the database, when each job moved again (a poll claimed
it, or its status changed). A job is "due" at the later of its `due_at` as the fault hit
and the moment the stack could act again (the new worker ready, Redis back).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from services import processes
from shared.db import utcnow
from shared.jobs.models import Job
from shared.jobs.status import PublicStatus
from shared.runtime import Runtime
from tests.helpers import generate, wait_for_job
from tests.invariants import assert_invariants
from tests.stack import PrivateRedis, kill_tree, running_worker, started
from tests.waiting import wait_for

BOUND = timedelta(seconds=5)
GRANT = "1000"
RENDER_SECONDS = 6


@dataclass
class Watch:
    """Each job's (status, poll count) as the fault hit, and when it first changed after."""

    runtime: Runtime
    ids: list[uuid.UUID]
    before: dict[uuid.UUID, tuple[str, int, datetime | None]] = field(default_factory=dict)
    moved: dict[uuid.UUID, datetime] = field(default_factory=dict)

    def rows(self) -> dict[uuid.UUID, tuple[str, int, datetime | None]]:
        with self.runtime.db.transaction() as session:
            found = session.execute(
                select(Job.id, Job.status, Job.poll_count, Job.due_at).where(Job.id.in_(self.ids))
            ).all()
        return {job_id: (str(status), count, due) for job_id, status, count, due in found}

    def snapshot(self) -> None:
        self.before = self.rows()

    def all_moved(self) -> bool:
        now = utcnow()
        for job_id, (status, count, _) in self.rows().items():
            was_status, was_count, _ = self.before[job_id]
            if job_id not in self.moved and (status != was_status or count != was_count):
                self.moved[job_id] = now
        return len(self.moved) == len(self.ids)

    def lateness(self, able_at: datetime) -> dict[uuid.UUID, float]:
        """Seconds from when each job could first move (due, and the stack able) to its move."""
        late = {}
        for job_id, moved_at in self.moved.items():
            due = self.before[job_id][2] or able_at
            late[job_id] = (moved_at - max(due, able_at)).total_seconds()
        return late


@dataclass
class Stack:
    env: dict[str, str]
    client: Any
    account: Any
    runtime: Runtime
    folder: Path
    redis: PrivateRedis

    def submit(self, count: int) -> list[uuid.UUID]:
        return [
            uuid.UUID(
                generate(self.client, self.account, f"Recover {i} [sim latency={RENDER_SECONDS}]")[
                    "job_id"
                ]
            )
            for i in range(count)
        ]

    def at_provider(self, ids: list[uuid.UUID]) -> bool:
        with self.runtime.db.transaction() as session:
            polled = session.scalars(
                select(Job.poll_count).where(Job.id.in_(ids), Job.started_at.is_not(None))
            ).all()
        return len(polled) == len(ids)

    def finish(self, ids: list[uuid.UUID]) -> None:
        for job_id in ids:
            job = wait_for_job(self.client, self.account, str(job_id), timeout=120)
            assert job["status"] == PublicStatus.COMPLETED, job
        assert_invariants(self.runtime, {self.account.id: int(GRANT) * 100}, ids)


@pytest.fixture
def stack(
    make_app: Callable[..., Flask],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Stack]:
    redis = PrivateRedis(tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    changes = {
        "CELERY_BROKER_URL": redis.url(0),
        "CELERY_QUEUE": f"recovery-{uuid.uuid4().hex[:8]}",
        "POLL_INITIAL_SECONDS": "0.5",
        "POLL_MAX_SECONDS": "2",
        "VISIBILITY_TIMEOUT_SECONDS": "3600",  # as in production: only the dispatcher helps
        "POLL_HORIZON_SECONDS": "2",  # as in production: beat sends the polls due later
    }
    env = {**test_env, **changes}
    app = make_app(**changes)
    beat = processes.python_m(processes.beat(schedule=tmp_path / "beat-schedule"))
    with started(beat, tmp_path / "beat.log", env=env, ready=lambda: True):
        yield Stack(
            env=env,
            client=app.test_client(),
            account=make_account(GRANT),
            runtime=app.extensions["naive"],
            folder=tmp_path,
            redis=redis,
        )
    redis.stop()


def _report(name: str, late: dict[uuid.UUID, float]) -> None:
    values = sorted(late.values())
    print(
        f"\n[{name}] {len(values)} jobs moved again, after they could: "
        f"median {values[len(values) // 2]:.2f} s, max {values[-1]:.2f} s"
    )
    assert max(values) <= BOUND.total_seconds(), late


def test_after_kill_9_of_the_worker_a_new_worker_moves_every_job_within_5_s(
    stack: Stack,
) -> None:
    with running_worker(stack.env, stack.folder / "first.log") as first:
        ids = stack.submit(12)
        wait_for(lambda: stack.at_provider(ids), timeout=30)
        watch = Watch(stack.runtime, ids)
        kill_tree(first.pid)  # its countdowns die with it: only PostgreSQL knows the polls
        watch.snapshot()
    with running_worker(stack.env, stack.folder / "second.log"):
        ready_at = utcnow()
        wait_for(watch.all_moved, timeout=60, interval=0.05)
        _report("kill -9", watch.lateness(ready_at))
        stack.finish(ids)


def test_after_flushall_every_job_moves_within_5_s(stack: Stack) -> None:
    with running_worker(stack.env, stack.folder / "worker.log"):
        ids = stack.submit(12)
        wait_for(lambda: stack.at_provider(ids), timeout=30)
        watch = Watch(stack.runtime, ids)
        watch.snapshot()
        stack.redis.client().flushall()
        flushed_at = utcnow()
        wait_for(watch.all_moved, timeout=60, interval=0.05)
        _report("FLUSHALL", watch.lateness(flushed_at))
        stack.finish(ids)


def test_after_a_redis_restart_the_same_worker_moves_every_job_within_5_s(stack: Stack) -> None:
    with running_worker(stack.env, stack.folder / "worker.log") as worker:
        ids = stack.submit(12)
        wait_for(lambda: stack.at_provider(ids), timeout=30)
        watch = Watch(stack.runtime, ids)
        watch.snapshot()
        stack.redis.restart()  # every message is lost; the worker holds countdowns
        back_at = utcnow()
        wait_for(watch.all_moved, timeout=60, interval=0.05)
        assert worker.poll() is None, "the worker exited on the Redis restart"
        _report("Redis restart", watch.lateness(back_at))
        stack.finish(ids)
