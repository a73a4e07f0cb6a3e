"""Batches of polls on the real worker: at least once, fenced, and on to completion.

The dispatcher sends parked and overdue polls as `poll_batch` messages (a token and up to
POLL_BATCH_SIZE job ids). Each test runs a worker of its own on a queue of its own with
the production poll horizon (2 s: a wait beyond it is parked, and no beat runs here to
send it), sends batches as the dispatcher would, and reads the outcome from the database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask.testing import FlaskClient
from sqlalchemy import select

from services.worker import celery_app as names
from services.worker.celery_app import make_celery
from services.worker.dispatcher import dispatch
from shared.config import Settings, load_settings
from shared.db import utcnow
from shared.jobs.models import Job
from shared.runtime import Runtime
from tests.fake_fal import FakeFalServer
from tests.helpers import (
    STALLED_PROGRESS,
    balance,
    fal_stats,
    generate,
    job_entries,
    stalled_renders,
    tagged,
    wait_task_done,
)
from tests.invariants import assert_invariants, unfinished
from tests.stack import fal_env, running_worker
from tests.waiting import wait_for

GRANT = "1000"


@dataclass
class Batches:
    settings: Settings
    runtime: Runtime
    celery: Celery
    client: FlaskClient
    account: Any
    log: Path

    def send(self, token: str, ids: list[uuid.UUID]) -> str:
        """One batch, as the dispatcher sends it; returns its task id."""
        message = self.celery.send_task(names.POLL_BATCH, args=(token, [str(i) for i in ids]))
        return str(message.id)

    def rows(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, Job]:
        with self.runtime.db.transaction() as session:
            return {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(ids)))}


@contextmanager
def _stack(
    make_app: Callable[..., Any],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    folder: Path,
    **extra: str,
) -> Iterator[Batches]:
    changes = {
        "CELERY_QUEUE": f"batches-{uuid.uuid4().hex[:8]}",
        "POLL_HORIZON_SECONDS": "2",
        **extra,
    }
    env = {**test_env, **changes}
    settings = load_settings(env)
    runtime = Runtime(settings)
    log = folder / "worker.log"
    with running_worker(env, log):
        yield Batches(
            settings=settings,
            runtime=runtime,
            celery=make_celery(settings),
            client=make_app(**changes).test_client(),
            account=make_account(GRANT),
            log=log,
        )
    runtime.db.dispose()


@pytest.fixture
def batches(
    make_app: Callable[..., Any],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Batches]:
    """A worker on the simulator."""
    with _stack(make_app, make_account, test_env, tmp_path) as stack:
        yield stack


@pytest.fixture
def fal_batches(
    fake_fal: FakeFalServer,
    make_app: Callable[..., Any],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Batches]:
    """A worker on fal (the fake fal server, through the real fal-client)."""
    with _stack(make_app, make_account, test_env, tmp_path, **fal_env(fake_fal)) as stack:
        yield stack


def test_a_batch_delivered_twice_polls_each_job_once(batches: Batches) -> None:
    ids = stalled_renders(batches.runtime, batches.settings, batches.account.id, 10, "t1")
    before = batches.rows(ids)

    first, second = batches.send("t1", ids), batches.send("t1", ids)  # side by side
    for task_id in (first, second):
        wait_task_done(batches.log, task_id)

    after = batches.rows(ids)
    for job_id in ids:
        job = after[job_id]
        assert job.poll_count == 1, job.poll_count  # claimed by one delivery only
        assert job.status == "running" and job.progress == STALLED_PROGRESS
        assert job.event_seq == before[job_id].event_seq  # nothing a customer sees changed
        # reported and parked: the next poll is the render's expected end, 10 minutes out
        assert job.poll_token is None and job.due_at is not None
        assert job.due_at - utcnow() > timedelta(minutes=5)
    assert "naive.poll_batch" in batches.log.read_text()


def test_a_batch_with_a_stale_token_changes_nothing(batches: Batches) -> None:
    ids = stalled_renders(batches.runtime, batches.settings, batches.account.id, 3, "live")
    before = batches.rows(ids)

    wait_task_done(batches.log, batches.send("old", ids))

    after = batches.rows(ids)
    for job_id in ids:
        assert after[job_id].poll_count == 0
        assert after[job_id].poll_token == "live"
        assert after[job_id].due_at == before[job_id].due_at
        assert after[job_id].updated_at == before[job_id].updated_at


def test_an_unexpected_error_in_one_job_ends_that_job_only(batches: Batches) -> None:
    """One job's provider record is damaged (reading it raises what no rule expects): that
    job fails with `internal_error`, released; the batch's other jobs are polled as usual."""
    settings, runtime = batches.settings, batches.runtime
    ids = stalled_renders(runtime, settings, batches.account.id, 3, "t")
    damaged = ids[0]
    request_id = batches.rows([damaged])[damaged].provider_request_id
    record = settings.simulator_root / "requests" / f"{request_id}.json"
    intact = record.read_text()
    record.write_text(intact[:10])
    try:
        wait_task_done(batches.log, batches.send("t", ids))
    finally:
        record.write_text(intact)  # the simulator's folder is the session's: leave it whole

    after = batches.rows(ids)
    assert after[damaged].status == "failed"
    assert after[damaged].error is not None
    assert after[damaged].error["code"] == "internal_error"
    entries = job_entries(runtime, str(damaged))
    assert entries["release"] == entries["hold"]
    for job_id in ids[1:]:
        assert after[job_id].status == "running" and after[job_id].poll_count == 1


def _dispatch_until_done(batches: Batches, ids: list[uuid.UUID], *, ahead: timedelta) -> None:
    """Run the dispatcher as beat would, every half second, until every job has ended; the
    first run `ahead` of now, so that every poll due by then goes out in a batch at once."""
    moments = iter([utcnow() + ahead])

    def ended() -> bool:
        dispatch(batches.runtime, batches.celery, now=next(moments, utcnow()))
        return not unfinished(batches.runtime, ids)

    wait_for(ended, timeout=90, interval=0.5, message=lambda: str(unfinished(batches.runtime, ids)))
    assert "naive.poll_batch" in batches.log.read_text()
    for job in batches.rows(ids).values():
        assert job.status == "completed", (job.id, job.status, job.error)
    assert_invariants(batches.runtime, {batches.account.id: int(GRANT) * 100}, ids)
    assert balance(batches.runtime, batches.account).held == 0


def test_parked_polls_sent_in_batches_carry_their_jobs_to_completion(batches: Batches) -> None:
    """3 s renders: each first poll is due past the horizon, so it is parked; the dispatcher
    sends the parked polls in batches, a batch that finds a render done hands the job to
    `poll_job` for its result, and every job ends completed, charged once, in the library."""
    ids = [
        uuid.UUID(generate(batches.client, batches.account, f"Batch {i} [sim latency=3]")["job_id"])
        for i in range(6)
    ]
    _dispatch_until_done(batches, ids, ahead=timedelta(0))


def test_a_batch_on_fal_asks_in_parallel_and_its_jobs_complete(
    fal_batches: Batches, fake_fal: FakeFalServer
) -> None:
    """On fal a batch's status calls run on a small thread pool. The first dispatch runs a
    minute ahead, so every job's poll, due within it, goes out in one batch at once (the
    jobs' own poll loops are fenced out): renders still running are polled again in
    batches, those done are handed to `poll_job`, and every job completes."""
    stack = fal_batches
    accepted = [
        generate(stack.client, stack.account, tagged(f"Fal batch {i} [sim latency=2]"))
        for i in range(8)
    ]
    ids = [uuid.UUID(job["job_id"]) for job in accepted]
    wait_for(
        lambda: all(job.provider_request_id for job in stack.rows(ids).values()),
        timeout=30,
        message="not all submitted to fal",
    )
    _dispatch_until_done(stack, ids, ahead=timedelta(seconds=60))
    for job in stack.rows(ids).values():
        assert job.provider_request_id is not None
        assert fal_stats(fake_fal, job.provider_request_id)["status_calls"] >= 1
