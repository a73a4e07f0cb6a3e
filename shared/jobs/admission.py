"""Fair scheduling: which waiting job gets the next free slot at the provider.

A provider has a capacity (`PROVIDER_CONCURRENCY`), a model may have its own
(`MODEL_CONCURRENCY`) and an account may have a cap (`accounts.concurrency_cap`). A job
that counts against any of them is made waiting (`capacity_limited`, `admitted_at` None,
no due time: no message in Redis) and holds a slot from its admission until it leaves the
provider (delivered, failed or cancelled).

The order is weighted round robin across accounts: while jobs wait, each free slot goes to
the waiting account that has been admitted the fewest jobs per unit of weight since the
oldest waiting job arrived (`served / weight`; ties: the account admitted least recently,
then the one holding fewer slots, so a newcomer goes first even before an account whose
running jobs were all admitted before the backlog began, and turns alternate); within an
account, oldest first. An account that submits 1,000 jobs therefore takes turns with one
that submits 4, whatever the arrival order: the second's k-th job gets a slot no later
than the first's (k + its head start)-th (in the same round at the latest). An account at
its cap, or a job whose model is at capacity, is passed over for that round.

A round (`admit`) runs under a per-provider lock, so two rounds never hand out the same
slot: after every submit that has to wait, after a poll frees a slot, and on every
dispatcher tick (which also covers cancels and lost messages). A job admitted late gets
its whole deadline from its admission, not from its creation.
"""

from __future__ import annotations

import heapq
import itertools
import math
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, bindparam, func, select, text, update
from sqlalchemy.orm import Session

from shared.accounts.models import Account
from shared.config import Settings
from shared.jobs.models import Job
from shared.jobs.status import JobStatus

# How many waiting jobs per account and model one round looks at (a round admits at most
# that many jobs of any one).
ROUND_LIMIT = 500
_HOLDING = (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING)


class ThrottledBy(StrEnum):
    """Why a waiting job waits."""

    PROVIDER = "provider"  # the provider's (or its model's) capacity is in use
    ACCOUNT = "account"  # the account's own cap is reached


def waiting() -> Any:
    """The condition of a job waiting for a slot (the partial index `ix_jobs_waiting`)."""
    return and_(
        Job.status == JobStatus.QUEUED, Job.capacity_limited.is_(True), Job.admitted_at.is_(None)
    )


def holding_slot() -> Any:
    """The condition of a job holding a slot: admitted, not yet off the provider."""
    return and_(
        Job.status.in_(_HOLDING), Job.capacity_limited.is_(True), Job.admitted_at.is_not(None)
    )


def is_waiting(job: Job) -> bool:
    return job.status is JobStatus.QUEUED and job.capacity_limited and job.admitted_at is None


def limited(settings: Settings, model: str, account_cap: int | None) -> bool:
    """Whether a new job of `model` for an account with `account_cap` must be admitted."""
    return account_cap is not None or settings.capacity_limits(model)


@dataclass(frozen=True)
class _Candidate:
    id: uuid.UUID
    account_id: uuid.UUID
    model: str
    created_at: datetime
    deadline_at: datetime


def _lock(session: Session, provider: str) -> None:
    """One round at a time per provider (SQLite: the write transaction already is)."""
    if session.get_bind().dialect.name == "postgresql":
        key = zlib.crc32(f"naive.admission.{provider}".encode())
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


def _in_use(session: Session, provider: str) -> tuple[Counter[uuid.UUID], Counter[str]]:
    """Slots held now, by account and by model."""
    rows = session.execute(
        select(Job.account_id, Job.model, func.count())
        .where(Job.provider == provider, holding_slot())
        .group_by(Job.account_id, Job.model)
    )
    accounts: Counter[uuid.UUID] = Counter()
    models: Counter[str] = Counter()
    for account_id, model, count in rows:
        accounts[account_id] += count
        models[model] += count
    return accounts, models


@dataclass(frozen=True)
class _Served:
    """Jobs admitted per account since the backlog began, and when each account was last."""

    count: Counter[uuid.UUID]
    last: dict[uuid.UUID, datetime]


def _served(session: Session, provider: str, since: datetime) -> _Served:
    rows = session.execute(
        select(Job.account_id, func.count(), func.max(Job.admitted_at))
        .where(Job.provider == provider, Job.capacity_limited.is_(True), Job.admitted_at >= since)
        .group_by(Job.account_id)
    )
    count: Counter[uuid.UUID] = Counter()
    last: dict[uuid.UUID, datetime] = {}
    for account_id, admitted, latest in rows:
        count[account_id] = admitted
        if latest is not None:
            last[account_id] = latest
    return _Served(count, last)


def _candidates(session: Session, provider: str, per_group: int) -> list[_Candidate]:
    """The oldest `per_group` waiting jobs of each account and model, oldest first."""
    rank = (
        func.row_number()
        .over(partition_by=(Job.account_id, Job.model), order_by=(Job.created_at, Job.id))
        .label("rank")
    )
    ranked = (
        select(Job.id, Job.account_id, Job.model, Job.created_at, Job.deadline_at, rank)
        .where(Job.provider == provider, waiting())
        .subquery()
    )
    rows = session.execute(
        select(ranked.c.id, ranked.c.account_id, ranked.c.model)
        .add_columns(ranked.c.created_at, ranked.c.deadline_at)
        .where(ranked.c.rank <= per_group)
        .order_by(ranked.c.created_at, ranked.c.id)
    )
    return [_Candidate(*row) for row in rows]


@dataclass(frozen=True)
class _Shares:
    caps: dict[uuid.UUID, int | None]
    weights: dict[uuid.UUID, int]


def _shares(session: Session, account_ids: set[uuid.UUID]) -> _Shares:
    rows = session.execute(
        select(Account.id, Account.concurrency_cap, Account.scheduling_weight).where(
            Account.id.in_(account_ids)
        )
    )
    caps: dict[uuid.UUID, int | None] = {}
    weights: dict[uuid.UUID, int] = {}
    for account_id, cap, weight in rows:
        caps[account_id], weights[account_id] = cap, max(1, weight)
    return _Shares(caps, weights)


def _pick(
    candidates: list[_Candidate],
    *,
    free: int | None,
    accounts_in_use: Counter[uuid.UUID],
    models_in_use: Counter[str],
    model_caps: dict[str, int],
    shares: _Shares,
    served: _Served,
) -> list[_Candidate]:
    """The jobs the free slots go to, in the fair order (pure: no database)."""
    queues: dict[uuid.UUID, list[_Candidate]] = defaultdict(list)
    for candidate in candidates:  # oldest first
        queues[candidate.account_id].append(candidate)
    never = datetime.min.replace(tzinfo=UTC)
    last = dict(served.last)
    picks = itertools.count()  # orders this round's picks after every earlier admission

    def turn(account_id: uuid.UUID) -> tuple[float, datetime, int, int, str]:
        share = served.count[account_id] / shares.weights.get(account_id, 1)
        holding = accounts_in_use[account_id]
        return share, last.get(account_id, never), holding, 0, str(account_id)

    heap = [(*turn(account_id), account_id) for account_id in queues]
    heapq.heapify(heap)
    chosen: list[_Candidate] = []
    while heap and (free is None or len(chosen) < free):
        account_id = heapq.heappop(heap)[-1]
        cap = shares.caps.get(account_id)
        if cap is not None and accounts_in_use[account_id] >= cap:
            continue  # at its own cap: its jobs wait for its own to finish
        pending = queues[account_id]
        job = next(
            (j for j in pending if models_in_use[j.model] < model_caps.get(j.model, 1 << 30)),
            None,
        )
        if job is None:
            continue  # every model it waits on is at capacity
        pending.remove(job)
        chosen.append(job)
        accounts_in_use[account_id] += 1
        models_in_use[job.model] += 1
        served.count[account_id] += 1
        if pending:
            share, _, _, _, name = turn(account_id)
            # served just now: after every account admitted before this round
            heapq.heappush(
                heap, (share, datetime.max.replace(tzinfo=UTC), 0, next(picks), name, account_id)
            )
    return chosen


# Run on the connection, once per admitted job (executemany).
_ADMIT = (
    update(Job)
    .where(Job.id == bindparam("job_id"), Job.status == JobStatus.QUEUED, Job.admitted_at.is_(None))
    .values(
        admitted_at=bindparam("now"),
        due_at=bindparam("now"),  # its submit is sent after the commit; resent if lost
        updated_at=bindparam("now"),
        deadline_at=bindparam("deadline"),
    )
)


def admit(*, session: Session, settings: Settings, provider: str, now: datetime) -> list[uuid.UUID]:
    """Give the free slots of `provider` to waiting jobs, in the fair order; returns the
    admitted jobs (the caller sends their submits after the commit)."""
    _lock(session, provider)
    accounts_in_use, models_in_use = _in_use(session, provider)
    free = None
    if settings.provider_concurrency is not None:
        free = settings.provider_concurrency - sum(accounts_in_use.values())
        if free <= 0:
            return []
    candidates = _candidates(session, provider, min(free or ROUND_LIMIT, ROUND_LIMIT))
    if not candidates:
        return []
    chosen = _pick(
        candidates,
        free=free,
        accounts_in_use=accounts_in_use,
        models_in_use=models_in_use,
        model_caps=dict(settings.model_concurrency),
        shares=_shares(session, {job.account_id for job in candidates}),
        served=_served(session, provider, min(job.created_at for job in candidates)),
    )
    if chosen:
        session.connection().execute(
            _ADMIT,
            [
                # The deadline counts from the admission: waiting is not rendering.
                {"job_id": job.id, "now": now, "deadline": now + (job.deadline_at - job.created_at)}
                for job in chosen
            ],
        )
    return [job.id for job in chosen]


def providers_with_waiting(*, session: Session) -> list[str]:
    """The providers some job waits for (the dispatcher runs a round for each)."""
    return list(session.scalars(select(Job.provider).where(waiting()).distinct()))


@dataclass(frozen=True)
class Place:
    """Where a waiting job stands: why it waits and its place in line (1: next)."""

    throttled_by: ThrottledBy
    position: int


def place_in_line(*, session: Session, job: Job) -> Place:
    """Why `job` (waiting) waits, and how many waiting jobs the fair order puts before it
    plus one, as of now (the order follows `admit`'s: each account's turn comes at
    `(served + k) / weight` for its k-th waiting job; ties are not told apart)."""
    ahead_in_account = session.scalar(
        select(func.count()).where(
            Job.provider == job.provider,
            Job.account_id == job.account_id,
            waiting(),
            (Job.created_at < job.created_at)
            | and_(Job.created_at == job.created_at, Job.id < job.id),
        )
    )
    per_account = session.execute(
        select(
            Job.account_id,
            func.count().filter(Job.admitted_at.is_(None)),
            func.count().filter(Job.admitted_at.is_not(None)),
            Account.concurrency_cap,
            Account.scheduling_weight,
        )
        .join(Account, Account.id == Job.account_id)
        .where(Job.provider == job.provider, Job.status.in_(_HOLDING), Job.capacity_limited)
        .group_by(Job.account_id, Account.concurrency_cap, Account.scheduling_weight)
    )
    oldest = session.scalar(
        select(func.min(Job.created_at)).where(Job.provider == job.provider, waiting())
    )
    served = _served(session, job.provider, oldest or job.created_at)
    mine = 1 + (ahead_in_account or 0)
    others: list[tuple[int, int, int]] = []
    throttled_by = ThrottledBy.PROVIDER
    turn = float(mine)
    for account_id, waiting_count, in_use, cap, weight in per_account:
        if account_id == job.account_id:
            turn = (served.count[account_id] + mine) / max(1, weight)
            if cap is not None and in_use >= cap:
                throttled_by = ThrottledBy.ACCOUNT
        else:
            others.append((waiting_count, served.count[account_id], max(1, weight)))
    ahead = mine - 1
    for waiting_count, admitted, weight in others:
        # the other account's k-th job goes first while (admitted + k) / weight < turn
        ahead += max(0, min(waiting_count, math.ceil(turn * weight - admitted) - 1))
    return Place(throttled_by, ahead + 1)


@dataclass(frozen=True)
class Waiting:
    account_id: uuid.UUID
    reason: ThrottledBy
    count: int


def waiting_by_account(*, session: Session) -> list[Waiting]:
    """How many jobs each account has waiting, and why (for the metrics)."""
    in_use = dict(
        session.execute(
            select(Job.account_id, func.count()).where(holding_slot()).group_by(Job.account_id)
        ).all()
    )
    rows = session.execute(
        select(Job.account_id, Account.concurrency_cap, func.count())
        .join(Account, Account.id == Job.account_id)
        .where(waiting())
        .group_by(Job.account_id, Account.concurrency_cap)
    )
    return [
        Waiting(
            account_id,
            ThrottledBy.ACCOUNT
            if cap is not None and in_use.get(account_id, 0) >= cap
            else ThrottledBy.PROVIDER,
            count,
        )
        for account_id, cap, count in rows
    ]


def slots_in_use(*, session: Session) -> dict[str, int]:
    """Slots held per provider (for the metrics)."""
    rows = session.execute(
        select(Job.provider, func.count()).where(holding_slot()).group_by(Job.provider)
    )
    return {provider: count for provider, count in rows}
