"""The fair scheduler's rounds on PostgreSQL and on SQLite (the embedded default): weights,
caps, model capacity, deadlines counted from admission, and the place in line."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import select, update

from shared import accounts
from shared.catalog import BUILTIN
from shared.config import Settings, load_settings
from shared.db import Database, utcnow
from shared.jobs import admission, machine
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import JobCreate
from shared.jobs.status import JobStatus
from tests.helpers import KLING_T2V

OTHER_MODEL = "fal-ai/wan/v2.7/text-to-video"
DEADLINE = timedelta(seconds=BUILTIN.get(KLING_T2V).deadline_seconds)


def limited(capacity: int = 4, **env: str) -> Settings:
    # A provider name of its own per test: rounds only see that provider's jobs.
    return load_settings({"PROVIDER_CONCURRENCY": str(capacity), **env})


def new_account(db: Database, *, cap: int | None = None, weight: int = 1) -> uuid.UUID:
    with db.transaction() as session:
        account_id = accounts.create_account(
            session=session, name="fair", credits=Decimal(1000)
        ).account_id
        accounts.set_scheduling(
            session=session, account_id=account_id, concurrency_cap=cap, weight=weight
        )
    return account_id


def submit(
    db: Database, settings: Settings, provider: str, account_id: uuid.UUID, count: int, **kw: str
) -> list[uuid.UUID]:
    made = []
    for _ in range(count):
        with db.transaction() as session:
            made.append(
                jobs.create_job(
                    session=session,
                    settings=settings,
                    catalog=BUILTIN,
                    provider_name=provider,
                    account_id=account_id,
                    request=JobCreate(model=kw.get("model", KLING_T2V), input={"prompt": "x"}),
                    idempotency_key=None,
                ).job.id
            )
    return made


def admit(db: Database, settings: Settings, provider: str) -> list[uuid.UUID]:
    with db.transaction() as session:
        return admission.admit(session=session, settings=settings, provider=provider, now=utcnow())


def owners(db: Database, job_ids: list[uuid.UUID]) -> Counter[uuid.UUID]:
    with db.transaction() as session:
        rows = session.scalars(select(Job.account_id).where(Job.id.in_(job_ids)))
        return Counter(rows)


def test_free_slots_go_by_weight_not_by_arrival(db: Database) -> None:
    settings, provider = limited(6), f"p-{uuid.uuid4().hex[:6]}"
    heavy, light = new_account(db, weight=2), new_account(db)
    submit(db, settings, provider, heavy, 10)  # first to arrive
    submit(db, settings, provider, light, 10)
    admitted = admit(db, settings, provider)
    assert owners(db, admitted) == {heavy: 4, light: 2}
    assert admit(db, settings, provider) == []  # no slot left: nothing more


def test_a_newcomer_goes_before_an_account_whose_running_jobs_came_before_the_backlog(
    db: Database,
) -> None:
    """Neither account was admitted since the oldest waiting job arrived: the one holding
    no slot takes the next, whichever sorts first by id."""
    settings, provider = limited(4), f"p-{uuid.uuid4().hex[:6]}"
    big, small = sorted((new_account(db), new_account(db)), key=str)  # big wins an id tie
    running = submit(db, settings, provider, big, 4)
    assert sorted(admit(db, settings, provider)) == sorted(running)  # before any backlog
    submit(db, settings, provider, big, 4)
    newcomer = submit(db, settings, provider, small, 4)
    with db.transaction() as session:  # one of the big account's renders ends
        session.execute(update(Job).where(Job.id == running[0]).values(status=JobStatus.COMPLETED))
    assert admit(db, settings, provider) == [newcomer[0]]


def test_an_account_cap_and_a_model_capacity_hold(db: Database) -> None:
    settings = limited(10, MODEL_CONCURRENCY=f"{OTHER_MODEL}=1")
    provider = f"p-{uuid.uuid4().hex[:6]}"
    capped, free = new_account(db, cap=2), new_account(db)
    submit(db, settings, provider, capped, 5)
    other_model = submit(db, settings, provider, free, 3, model=OTHER_MODEL)
    admitted = admit(db, settings, provider)
    assert owners(db, admitted) == {capped: 2, free: 1}
    assert sum(job in admitted for job in other_model) == 1


def test_a_waiting_job_has_no_due_time_and_its_deadline_counts_from_admission(
    db: Database,
) -> None:
    settings, provider = limited(1), f"p-{uuid.uuid4().hex[:6]}"
    account = new_account(db)
    first, second = submit(db, settings, provider, account, 2)
    assert admit(db, settings, provider) == [first]
    with db.transaction() as session:
        waiting = session.get_one(Job, second)
        assert waiting.due_at is None and waiting.admitted_at is None
        assert waiting.deadline_at - waiting.created_at == DEADLINE
        place = admission.place_in_line(session=session, job=waiting)
    assert (place.throttled_by, place.position) == (admission.ThrottledBy.PROVIDER, 1)
    with db.transaction() as session:  # the first leaves the provider: the second's turn
        jobs.fail(session=session, job_id=first, failure=machine.TIMED_OUT)
    assert admit(db, settings, provider) == [second]
    with db.transaction() as session:
        admitted = session.get_one(Job, second)
        assert admitted.admitted_at is not None and admitted.due_at == admitted.admitted_at
        assert admitted.deadline_at - admitted.admitted_at == DEADLINE


def test_the_place_in_line_counts_other_accounts_turns(db: Database) -> None:
    settings, provider = limited(2), f"p-{uuid.uuid4().hex[:6]}"
    big, small = new_account(db), new_account(db, cap=1)
    submit(db, settings, provider, big, 2)
    admit(db, settings, provider)  # big holds both slots
    big_waiting = submit(db, settings, provider, big, 3)
    small_waiting = submit(db, settings, provider, small, 1)
    with db.transaction() as session:
        third = admission.place_in_line(session=session, job=session.get_one(Job, big_waiting[2]))
        first_small = admission.place_in_line(
            session=session, job=session.get_one(Job, small_waiting[0])
        )
    # small (nothing in use) goes first; big's third waits behind its own two and small's
    assert first_small.position == 1 and third.position == 4
    assert third.throttled_by is admission.ThrottledBy.PROVIDER
