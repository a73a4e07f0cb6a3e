"""The job state machine's rules, tested directly: no database, no worker, no broker."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.jobs import machine
from shared.jobs.machine import Step
from shared.jobs.status import (
    ACTIVE_AT_PROVIDER,
    CANCELLABLE,
    DELIVERED,
    TERMINAL,
    JobStatus,
    PublicStatus,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class State:
    """The fields of a job the rules read."""

    status: JobStatus = JobStatus.QUEUED
    created_at: datetime = NOW - timedelta(seconds=10)
    due_at: datetime | None = NOW + timedelta(seconds=5)
    deadline_at: datetime = NOW + timedelta(minutes=10)
    submit_attempted_at: datetime | None = None
    cancel_requested_at: datetime | None = None
    provider_completed_at: datetime | None = None
    result_unfetched_since: datetime | None = None


def due(**fields: object) -> State:
    """A job whose next step should have happened a second ago (its message is lost)."""
    return replace(State(), **{"due_at": NOW - timedelta(seconds=1), **fields})  # type: ignore[arg-type]


def test_every_status_has_exactly_one_public_name() -> None:
    assert {status.public for status in JobStatus} == set(PublicStatus)
    for public in PublicStatus:
        assert all(status.public is public for status in public.internal)
    assert [status for status in JobStatus if status.public is PublicStatus.PROCESSING] == [
        JobStatus.SUBMITTED,
        JobStatus.RUNNING,
        JobStatus.SETTLING,
        JobStatus.INGESTING,
    ]


def test_final_statuses_are_the_terminal_ones() -> None:
    assert {status.public for status in TERMINAL} == {
        public for public in PublicStatus if public.is_final
    }


def test_terminal_statuses_have_no_way_out() -> None:
    for status in TERMINAL:
        assert machine.TRANSITIONS[status] == frozenset()


def test_a_delivered_job_can_no_longer_be_cancelled() -> None:
    for status in DELIVERED:
        assert JobStatus.CANCELLED not in machine.TRANSITIONS[status]


def test_a_delivered_job_can_fail_but_is_never_cancelled() -> None:
    """Settling fails on an unexpected error (hold released), ingesting when the video
    cannot be stored (refunded); a provider's delivery cannot be taken back by a cancel."""
    for status in (JobStatus.SETTLING, JobStatus.INGESTING):
        assert JobStatus.FAILED in machine.TRANSITIONS[status]
        assert JobStatus.CANCELLED not in machine.TRANSITIONS[status]


def test_every_cancellable_status_can_fail_or_be_cancelled() -> None:
    for status in CANCELLABLE:
        assert {JobStatus.FAILED, JobStatus.CANCELLED} <= machine.TRANSITIONS[status]


def test_an_undeclared_transition_is_refused() -> None:
    with pytest.raises(machine.IllegalTransition):
        machine.check_transition((JobStatus.COMPLETED,), JobStatus.QUEUED)
    with pytest.raises(machine.IllegalTransition):
        machine.check_transition(ACTIVE_AT_PROVIDER, JobStatus.INGESTING)
    machine.check_transition(ACTIVE_AT_PROVIDER, JobStatus.SETTLING)


def test_every_status_is_reachable_from_queued() -> None:
    reached, frontier = {JobStatus.QUEUED}, [JobStatus.QUEUED]
    while frontier:
        for target in machine.TRANSITIONS[frontier.pop()] - reached:
            reached.add(target)
            frontier.append(target)
    assert reached == set(JobStatus)


@pytest.mark.parametrize(
    ("state", "step"),
    [
        (due(), Step.SUBMIT),
        (due(due_at=NOW), Step.SUBMIT),
        (due(submit_attempted_at=NOW - timedelta(minutes=3)), Step.FAIL_UNKNOWN_SUBMIT),
        (due(status=JobStatus.SUBMITTED), Step.POLL),
        (due(status=JobStatus.RUNNING), Step.POLL),
        (due(status=JobStatus.SETTLING), Step.SETTLE),
        (due(status=JobStatus.INGESTING), Step.INGEST),
        (
            due(status=JobStatus.INGESTING, provider_completed_at=NOW - timedelta(minutes=14)),
            Step.INGEST,
        ),
        # not in the library 15 minutes after delivery: it never will be (failed, refunded)
        (
            due(status=JobStatus.INGESTING, provider_completed_at=NOW - timedelta(minutes=15)),
            Step.FAIL_INGEST,
        ),
        (due(status=JobStatus.COMPLETED), None),
        (due(status=JobStatus.CANCELLED, due_at=None), None),
        (State(status=JobStatus.RUNNING, deadline_at=NOW), Step.FAIL_TIMEOUT),
        (State(deadline_at=NOW - timedelta(seconds=1)), Step.FAIL_TIMEOUT),
        # paid for: past the deadline it is still settled and ingested, never timed out
        (due(status=JobStatus.SETTLING, deadline_at=NOW - timedelta(hours=1)), Step.SETTLE),
    ],
)
def test_the_step_that_moves_a_job_on(state: State, step: Step | None) -> None:
    """When a job is due is PostgreSQL's to say (`claim_due`); what it needs, the machine's."""
    assert machine.step_for(state, now=NOW) is step


def test_the_step_of_a_claimed_job_follows_from_its_state_alone() -> None:
    """The dispatcher re-arms `due_at` as it claims; the step does not depend on it."""
    later = NOW + timedelta(seconds=30)
    assert machine.step_for(State(status=JobStatus.RUNNING, due_at=later), now=NOW) is Step.POLL
    assert machine.step_for(State(status=JobStatus.FAILED), now=NOW) is None


def test_submitting_is_given_up_at_the_retry_window_or_the_deadline() -> None:
    window = timedelta(seconds=300)
    young = State(created_at=NOW - timedelta(seconds=299))
    assert not machine.gives_up_submitting(young, now=NOW, retry_for=window)
    assert machine.gives_up_submitting(
        replace(young, created_at=NOW - window), now=NOW, retry_for=window
    )
    assert machine.gives_up_submitting(replace(young, deadline_at=NOW), now=NOW, retry_for=window)


def test_a_provider_ending_is_a_cancel_only_when_one_was_asked_for() -> None:
    assert machine.ending_at_provider(State(), "provider_error") is JobStatus.FAILED
    assert machine.ending_at_provider(State(), "cancelled") is JobStatus.CANCELLED
    asked = State(cancel_requested_at=NOW)
    assert machine.ending_at_provider(asked, "provider_error") is JobStatus.CANCELLED


def test_a_running_report_moves_the_job_to_running_and_others_leave_it() -> None:
    assert machine.status_for_report("running") is JobStatus.RUNNING
    assert machine.status_for_report("queued") is None


def test_ingestion_gives_up_on_its_last_attempt_only() -> None:
    attempts = [machine.ingest_gives_up(attempt) for attempt in range(machine.INGEST_ATTEMPTS)]
    assert attempts == [False] * (machine.INGEST_ATTEMPTS - 1) + [True]
    assert machine.ingest_failed("disk full").code == "ingest_failed"
