"""The job service on real PostgreSQL, without a worker: each transition is one conditional
update, duplicates change nothing, and the ledger follows every ending."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.orm import Session

from shared import catalog
from shared.config import Settings
from shared.db import utcnow
from shared.jobs import machine, pacing
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from shared.ledger import service as ledger
from shared.providers.base import ProviderResult
from shared.runtime import Runtime
from tests.helpers import KLING_T2V, job_entries, new_job, queued_job

VIDEO = ProviderResult(video_url="https://example.com/v.mp4", content_type="video/mp4", file_size=9)


def _delivered(runtime: Runtime, settings: Settings, account_id: uuid.UUID) -> uuid.UUID:
    """A job the provider has delivered (settling), moved there by the service alone."""
    job = queued_job(runtime, settings, account_id)
    with runtime.db.transaction() as session:
        connection = session.connection()
        assert jobs.claim_submit(connection=connection, job_id=job.id) is not None
        assert jobs.claim_submit(connection=connection, job_id=job.id) is None  # a duplicate
        assert jobs.record_submitted(
            session=session,
            job_id=job.id,
            request_id="r",
            poll_token="t",
            poll_in=1,
            expected_seconds=2,
        )
        [claimed] = jobs.claim_polls(
            connection=connection, job_ids=[job.id], token="t", new_token="u"
        )
        assert claimed.poll_count == 1
        assert (
            jobs.claim_polls(connection=connection, job_ids=[job.id], token="t", new_token="v")
            == []
        )
        assert jobs.record_delivered(session=session, job_id=job.id, result=VIDEO)
        assert not jobs.record_delivered(session=session, job_id=job.id, result=VIDEO)
    return job.id


def test_settling_twice_captures_once(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    job_id = _delivered(runtime, settings, account.id)
    with runtime.db.transaction() as session:
        assert jobs.settle(session=session, job_id=job_id)
        assert not jobs.settle(session=session, job_id=job_id)
    assert job_entries(runtime, str(job_id)) == {"hold": [350], "capture": [350]}


def test_ingest_failed_for_good_fails_the_job_and_refunds_its_charge(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    job_id = _delivered(runtime, settings, account.id)
    with runtime.db.transaction() as session:
        assert jobs.settle(session=session, job_id=job_id)
        assert jobs.fail_ingest(session=session, job_id=job_id, reason="disk full")
        assert not jobs.fail_ingest(session=session, job_id=job_id, reason="disk full")
        job = jobs.get_job(session=session, account_id=account.id, job_id=str(job_id))
        totals = ledger.balance(session=session, account_id=account.id)
    assert job.status is JobStatus.FAILED and job.credits_used == 0
    assert job.error == machine.ingest_failed("disk full").to_dict()
    assert job_entries(runtime, str(job_id)) == {"hold": [350], "capture": [350], "refund": [350]}
    assert (totals.balance, totals.held) == (10_000, 0)  # charged only for a video it has


def test_a_failure_after_delivery_changes_nothing(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    job_id = _delivered(runtime, settings, account.id)
    with runtime.db.transaction() as session:
        assert jobs.fail(session=session, job_id=job_id, failure=machine.TIMED_OUT) is None
        job = jobs.get_job(session=session, account_id=account.id, job_id=str(job_id))
    assert job.status is JobStatus.SETTLING
    assert job_entries(runtime, str(job_id)) == {"hold": [350]}


def test_every_state_change_writes_when_the_next_step_is_due(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    job = queued_job(runtime, settings, make_account().id)
    assert job.due_at == job.created_at  # its submit message is sent after the commit
    with runtime.db.transaction() as session:
        claimed = jobs.claim_submit(connection=session.connection(), job_id=job.id)
        assert claimed is not None and claimed.due_at is not None
        assert claimed.due_at - utcnow() > machine.SUBMIT_BUDGET - timedelta(seconds=5)
        submitted = jobs.record_submitted(
            session=session,
            job_id=job.id,
            request_id="r",
            poll_token="t",
            poll_in=7,
            expected_seconds=2,
        )
        assert submitted is not None and submitted.due_at is not None
        assert timedelta(seconds=5) < submitted.due_at - utcnow() <= timedelta(seconds=7)
        # never past the deadline: a job waiting that long is failed there
        session.execute(
            update(Job).where(Job.id == job.id).values(deadline_at=utcnow() + timedelta(seconds=2))
        )
        [polled] = jobs.claim_polls(
            connection=session.connection(), job_ids=[job.id], token="t", new_token="u"
        )
        assert polled.due_at == polled.deadline_at
        failed = jobs.fail(session=session, job_id=job.id, failure=machine.TIMED_OUT)
        assert failed is not None and failed.due_at is None


def test_the_dispatcher_claims_each_due_job_once_and_skips_what_another_holds(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    account = make_account()
    ids = {queued_job(runtime, settings, account.id).id for _ in range(3)}
    later = utcnow() + timedelta(seconds=60)  # all three (and any other due job) are due

    def claim(session: Session) -> set[uuid.UUID]:
        claimed = jobs.claim_due(
            session=session, now=later, cutoff=later, limit=10_000, poll_token="d"
        )
        return {job.id for job in claimed}

    with runtime.db.transaction() as first:
        mine = claim(first)
        assert ids <= mine
        with runtime.db.transaction() as second:  # while the first still holds its rows
            assert not claim(second) & ids
    with runtime.db.transaction() as again:  # claimed once: due again only later
        assert not claim(again) & ids


def test_an_unexpected_error_ends_a_delivered_job_without_charging_it(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    """Before the charge (settling) the hold is released; after it (ingesting), refunded.
    Either way the account pays nothing for a video it does not have, and once."""
    account = make_account()
    settling = _delivered(runtime, settings, account.id)
    ingesting = _delivered(runtime, settings, account.id)
    with runtime.db.transaction() as session:
        assert jobs.settle(session=session, job_id=ingesting)
        for job_id in (settling, ingesting):
            jobs.fail_on_error(session=session, job_id=job_id, kind="KeyError")
            assert jobs.fail_on_error(session=session, job_id=job_id, kind="KeyError") is None
        ended = [
            jobs.get_job(session=session, account_id=account.id, job_id=str(job_id))
            for job_id in (settling, ingesting)
        ]
        totals = ledger.balance(session=session, account_id=account.id)
    assert [job.status for job in ended] == [JobStatus.FAILED, JobStatus.FAILED]
    assert ended[0].error == machine.internal_error("KeyError").to_dict()
    assert job_entries(runtime, str(settling)) == {"hold": [350], "release": [350]}
    assert job_entries(runtime, str(ingesting)) == {
        "hold": [350],
        "capture": [350],
        "refund": [350],
    }
    assert (totals.balance, totals.held) == (10_000, 0)


def test_a_parked_poll_has_no_valid_message_until_the_dispatcher_claims_it_once(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    job = queued_job(runtime, settings, make_account().id)
    with runtime.db.transaction() as session:
        assert jobs.claim_submit(connection=session.connection(), job_id=job.id) is not None
        submitted = jobs.record_submitted(
            session=session,
            job_id=job.id,
            request_id="r",
            poll_token=None,  # parked: its first poll is 30 s away
            poll_in=30,
            expected_seconds=30,
        )
        assert submitted is not None and submitted.due_at is not None
    due = submitted.due_at

    def claim(until: timedelta) -> dict[uuid.UUID, Any]:
        with runtime.db.transaction() as session:
            rows = jobs.claim_parked(
                session=session, until=utcnow() + until, limit=10_000, poll_token="p"
            )
        return dict(rows)

    assert job.id not in claim(timedelta(seconds=10))  # not due within the horizon yet
    assert claim(timedelta(seconds=60))[job.id] == due  # sent once, for its own due time
    assert job.id not in claim(timedelta(seconds=60))
    with runtime.db.transaction() as session:
        connection = session.connection()
        assert (
            jobs.claim_polls(connection=connection, job_ids=[job.id], token="t", new_token="u")
            == []
        )
        [polled] = jobs.claim_polls(
            connection=connection, job_ids=[job.id], token="p", new_token="u"
        )
        assert polled.poll_count == 1


class _Undone(Exception):
    """Raised to roll a test's transaction back: the renders it made up stay its own."""


def test_a_new_job_is_estimated_by_its_models_recent_renders(
    runtime: Runtime,
    settings: Settings,
    make_account: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`estimated_seconds` from the 202 on: the median of the model's latest 20 renders, not
    the catalog's guess (60 s for this model), read at most once a minute per process."""
    account = make_account()
    monkeypatch.setattr(pacing, "_recent_renders", {})  # nothing read yet in this process
    later = utcnow() + timedelta(hours=1)  # newer than every render other tests delivered

    def render(session: Session, seconds: float) -> None:
        job = new_job(session, settings, account.id, "A kite")
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(started_at=later, provider_completed_at=later + timedelta(seconds=seconds))
        )

    with pytest.raises(_Undone), runtime.db.transaction() as session:
        for seconds in [4.0] * 10 + [5.0] * 10:  # the latest 20: a median of 4.5 s
            render(session, seconds)
        pacing._recent_renders.clear()
        assert jobs.expected_seconds(session=session, model=catalog.get_model(KLING_T2V)) == 5
        render(session, 90.0)  # read again only after a minute
        assert jobs.expected_seconds(session=session, model=catalog.get_model(KLING_T2V)) == 5
        raise _Undone
