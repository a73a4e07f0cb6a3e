"""Job events on real PostgreSQL: every change a customer can see is an event written with
the change, numbered 1, 2, 3… per job; duplicates, rollbacks and quiet polls write none."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from shared.config import Settings
from shared.jobs import events, machine
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import Job as JobView
from shared.jobs.status import JobStatus
from shared.providers.base import ProviderResult, ProviderState, ProviderStatus
from shared.runtime import Runtime
from tests.helpers import generate, get_job, queued_job, wait_for_job

VIDEO = ProviderResult(video_url="https://example.com/v.mp4", content_type="video/mp4", file_size=9)
Step = Callable[[Session, Job], object]


def _events(runtime: Runtime, job_id: uuid.UUID) -> list[tuple[int, str, dict[str, Any]]]:
    with runtime.db.transaction() as session:
        return [
            (event.seq, event.type, event.data)
            for event in events.events_after(session=session, job_id=job_id)
        ]


def _types(runtime: Runtime, job_id: uuid.UUID) -> list[str]:
    found = _events(runtime, job_id)
    assert [seq for seq, _, _ in found] == list(range(1, len(found) + 1))  # no gap, none twice
    return [kind for _, kind, _ in found]


# ---- the steps of a job's life, each as the service applies it -----------------------


def claim_submit(session: Session, job: Job) -> object:
    return jobs.claim_submit(connection=session.connection(), job_id=job.id)


def submitted(session: Session, job: Job) -> object:
    return jobs.record_submitted(
        session=session, job_id=job.id, request_id=f"r-{job.id}", poll_token="t0", poll_in=1,
        expected_seconds=3,
    )  # fmt: skip


def report(state: ProviderState, progress: int | None, queue_position: int | None = None) -> Step:
    """A poll: its claim, then what the provider said."""

    def poll(session: Session, job: Job) -> object:
        [claimed] = jobs.claim_polls(
            connection=session.connection(),
            job_ids=[job.id],
            token=job.poll_token or "",
            new_token=uuid.uuid4().hex,
        )
        status = ProviderStatus(state, progress=progress, queue_position=queue_position)
        report = jobs.PollReport(claimed, status, poll_in=1, poll_token=claimed.poll_token)
        return jobs.record_reports(session=session, reports=[report])

    return poll


def delivered(session: Session, job: Job) -> object:
    return jobs.record_delivered(session=session, job_id=job.id, result=VIDEO)


def settle(session: Session, job: Job) -> object:
    return jobs.settle(session=session, job_id=job.id)


def claim_ingest(session: Session, job: Job) -> object:
    return jobs.claim_ingest(connection=session.connection(), job_id=job.id)


def complete(session: Session, job: Job) -> object:
    return jobs.complete(session=session, job=job, media_asset_id=uuid.uuid4(), file_size=9)


def fail(session: Session, job: Job) -> object:
    return jobs.fail(session=session, job_id=job.id, failure=machine.TIMED_OUT)


def fail_on_error(session: Session, job: Job) -> object:
    return jobs.fail_on_error(session=session, job_id=job.id, kind="KeyError")


def fail_ingest(session: Session, job: Job) -> object:
    return jobs.fail_ingest(session=session, job_id=job.id, reason="the disk is full")


def cancel(session: Session, job: Job) -> object:
    return jobs.cancel(session=session, account_id=job.account_id, job_id=str(job.id))


def cancelled_at_provider(session: Session, job: Job) -> object:
    return jobs.record_provider_failure(session=session, job=job, code="cancelled", message=None)


SUBMIT = [claim_submit, submitted]
DELIVER = [*SUBMIT, report("running", 40), delivered]
# Paths through the state machine that together take every one of its transitions.
PATHS: dict[str, list[Step]] = {
    "cancelled while queued": [cancel],
    "failed while queued": [claim_submit, fail],
    "cancelled at the provider": [*SUBMIT, cancel, cancelled_at_provider],
    "failed while submitted": [*SUBMIT, fail],
    "cancelled while running": [*SUBMIT, report("running", 10), cancelled_at_provider],
    "failed while running": [*SUBMIT, report("running", 10), fail],
    "delivered while submitted": [*SUBMIT, delivered, settle, claim_ingest, complete],
    "failed while settling": [*DELIVER, fail_on_error],
    "failed while ingesting": [*DELIVER, settle, claim_ingest, fail_ingest],
    "completed": [*DELIVER, settle, claim_ingest, complete],
}


def test_every_change_a_customer_sees_has_its_event(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    """Walk every transition of the state machine: after each step the job's latest event
    shows the job exactly as GET /v1/jobs/{id} does (URLs signed at read time aside), and
    each change of its public status is an event of that name."""
    account = make_account()
    walked: set[tuple[JobStatus, JobStatus]] = set()
    for name, steps in PATHS.items():
        job_id = queued_job(runtime, settings, account.id).id
        for step in steps:
            with runtime.db.transaction() as session:
                before = session.get_one(Job, job_id)
                source, seq = before.status, before.event_seq
                assert step(session, before), f"{name}: {step} did not apply"
            with runtime.db.transaction() as session:
                after = session.get_one(Job, job_id)
                view = JobView.of(after, None).model_dump(mode="json")
            found = _events(runtime, job_id)
            assert found[-1][2] == view, f"{name}: {step} left the job unlike its last event"
            assert len(found) == after.event_seq
            if after.status is not source:
                walked.add((source, after.status))
            if after.status.public is not source.public:
                assert found[-1][1] == f"job.{after.status.public}", name
                assert after.event_seq > seq, name
        _types(runtime, job_id)
    every = {
        (source, target) for source, targets in machine.TRANSITIONS.items() for target in targets
    }
    assert walked == every


def test_a_jobs_life_yields_its_events_in_order(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    job_id = queued_job(runtime, settings, account.id).id
    life = [
        *SUBMIT,
        report("queued", 0, queue_position=3),
        report("queued", 0, queue_position=3),  # nothing new: no event
        report("running", 30),
        report("running", 30),  # nothing new: no event
        report("running", 20),  # progress never goes back: no event
        delivered,
        settle,
        claim_ingest,
        complete,
    ]
    for step in life:
        with runtime.db.transaction() as session:
            assert step(session, session.get_one(Job, job_id))
    assert _types(runtime, job_id) == [
        "job.queued",
        "job.processing",  # submitted
        "job.processing",  # queue position 3
        "job.processing",  # running, 30 %
        "job.processing",  # delivered: 100 %
        "job.processing",  # settled: credits_used shows the charge
        "asset.ingested",
        "job.completed",
    ]
    shown = [
        (data["status"], data["progress"], data["queue_position"])
        for *_, data in _events(runtime, job_id)
    ]
    assert shown == [
        ("queued", 0, None),
        ("processing", 0, None),
        ("processing", 0, 3),
        ("processing", 30, None),
        ("processing", 100, None),
        ("processing", 100, None),
        ("completed", 100, None),
        ("completed", 100, None),
    ]
    last = _events(runtime, job_id)[-1][2]
    assert last["credits_used"] == 3.5 and last["result"]["media_asset_id"]


def test_duplicate_steps_write_no_event_twice(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    """At-least-once delivery: every step run again (after its first run committed) changes
    nothing and writes nothing."""
    account = make_account()
    job_id = queued_job(runtime, settings, account.id).id
    for step in [claim_submit, submitted, delivered, settle, claim_ingest, complete]:
        with runtime.db.transaction() as session:
            assert step(session, session.get_one(Job, job_id))
        written = _events(runtime, job_id)
        with runtime.db.transaction() as session:
            assert not step(session, session.get_one(Job, job_id))
        assert _events(runtime, job_id) == written
    for late in [fail, cancel_quietly, fail_on_error, fail_ingest, cancelled_at_provider]:
        with runtime.db.transaction() as session:
            late(session, session.get_one(Job, job_id))
    assert _types(runtime, job_id)[-2:] == ["asset.ingested", "job.completed"]


def cancel_quietly(session: Session, job: Job) -> object:
    """A customer's cancel of a finished job: refused, and nothing is written."""
    with pytest.raises(Exception, match="can no longer be cancelled"):
        cancel(session, job)
    return None


class Boom(Exception):
    pass


def test_a_rolled_back_change_leaves_no_event(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    job_id = queued_job(runtime, settings, account.id).id
    with pytest.raises(Boom), runtime.db.transaction() as session:
        assert jobs.cancel(session=session, account_id=account.id, job_id=str(job_id))
        raise Boom
    assert _types(runtime, job_id) == ["job.queued"]
    with runtime.db.transaction() as session:
        assert session.get_one(Job, job_id).event_seq == 1
        jobs.cancel(session=session, account_id=account.id, job_id=str(job_id))
    assert _types(runtime, job_id) == ["job.queued", "job.cancelled"]


def test_a_job_run_by_the_worker_emits_its_life_in_order(
    client: FlaskClient, account: Any, runtime: Runtime
) -> None:
    job_id = generate(client, account, "A paper boat [sim latency=1]")["job_id"]
    shown = wait_for_job(client, account, job_id)
    assert shown["status"] == "completed"
    types = _types(runtime, uuid.UUID(job_id))
    assert types[0] == "job.queued" and types[-2:] == ["asset.ingested", "job.completed"]
    assert set(types[1:-2]) == {"job.processing"}
    found = _events(runtime, uuid.UUID(job_id))
    progress = [data["progress"] for *_, data in found]
    assert progress == sorted(progress)
    last = found[-1][2]
    assert last["result"]["video"]["url"] == shown["result"]["video"]["provider_url"]
    video = {**shown["result"]["video"], "url": last["result"]["video"]["url"]}
    assert last == {
        **shown,
        "result": {**shown["result"], "video": {**video, "provider_url": None}},
    }
    assert get_job(client, account, job_id) == shown  # reading writes no event
    assert len(_events(runtime, uuid.UUID(job_id))) == len(found)
