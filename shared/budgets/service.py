"""Budgets: set, list, and the check every submit makes before its hold.

The check runs under the account's lock (`ledger.lock_account`), in the transaction that
places the hold: concurrent submits at a budget's boundary are checked one after the
other, so exactly those that fit are accepted and a budget is never overspent.
What a period has spent: the credits the account's (or the key's) jobs submitted in it
commit — the charge of a settled job, the hold of one in flight; a failed or cancelled
job commits nothing (its hold was released, a refunded one is failed).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from shared import accounts, metrics
from shared.accounts.models import ApiKey
from shared.budgets import schemas
from shared.budgets.models import Budget
from shared.db import utcnow
from shared.errors import BudgetExceeded, BudgetState, InvalidInput
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from shared.ledger.credits import to_credits, to_units

_UNCOMMITTED = (JobStatus.FAILED, JobStatus.CANCELLED)


# How a refusal names a budget's period.
ADJECTIVE = {"day": "daily", "month": "monthly"}


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The calendar day or month (UTC) that `now` falls in."""
    start = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return start, start.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
    start = start.replace(day=1)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, following


def spent(*, session: Session, budget: Budget, now: datetime) -> int:
    """What the budget's jobs submitted in its current period commit (hundredths)."""
    since, _ = period_bounds(budget.period, now)
    query = select(
        func.coalesce(func.sum(func.coalesce(Job.credits_used, Job.estimated_credits)), 0)
    ).where(
        Job.account_id == budget.account_id,
        Job.created_at >= since,
        Job.status.not_in(_UNCOMMITTED),
    )
    if budget.scope == "key":
        query = query.where(Job.api_key_id == budget.key_id)
    return int(session.scalar(query) or 0)


def _applying(session: Session, account_id: uuid.UUID, key_id: uuid.UUID | None) -> list[Budget]:
    return list(
        session.scalars(
            select(Budget)
            .where(
                Budget.account_id == account_id,
                or_(
                    Budget.scope == "account", and_(Budget.scope == "key", Budget.key_id == key_id)
                ),
            )
            .order_by(Budget.created_at)
        )
    )


def check(
    *, session: Session, account_id: uuid.UUID, key_id: uuid.UUID | None, amount: int
) -> None:
    """Raise `BudgetExceeded` if committing `amount` more would take any budget of the
    account or of the key past its limit. The caller holds the account's lock."""
    now = utcnow()
    for budget in _applying(session, account_id, key_id):
        used = spent(session=session, budget=budget, now=now)
        if used + amount > budget.amount:
            metrics.BUDGET_REFUSALS.labels(budget.scope, budget.period).inc()
            start, _ = period_bounds(budget.period, now)
            left = to_credits(max(0, budget.amount - used))
            raise BudgetExceeded(
                f"This request commits {to_credits(amount)} credits; the "
                f"{ADJECTIVE[budget.period]} budget of the {budget.scope} has {left} "
                f"of {to_credits(budget.amount)} left.",
                budget=BudgetState(
                    id=budget.id,
                    scope=budget.scope,  # type: ignore[arg-type]
                    key_id=budget.key_id,
                    period=budget.period,  # type: ignore[arg-type]
                    credits=to_credits(budget.amount),
                    period_start=start,
                ),
                spent_credits=to_credits(used),
                remaining_credits=left,
                estimated_credits=to_credits(amount),
            )


def view(*, session: Session, budget: Budget, now: datetime) -> schemas.Budget:
    used = spent(session=session, budget=budget, now=now)
    start, end = period_bounds(budget.period, now)
    return schemas.Budget(
        id=budget.id,
        scope=budget.scope,  # type: ignore[arg-type]
        key_id=budget.key_id,
        period=budget.period,  # type: ignore[arg-type]
        credits=to_credits(budget.amount),
        spent_credits=to_credits(used),
        remaining_credits=to_credits(max(0, budget.amount - used)),
        period_start=start,
        period_end=end,
        created_at=budget.created_at,
        updated_at=budget.updated_at,
    )


@dataclass(frozen=True)
class Saved:
    budget: Budget
    created: bool


def set_budget(*, session: Session, account_id: uuid.UUID, request: schemas.BudgetSet) -> Saved:
    """Create the budget, or replace the amount of the one with the same scope, key and
    period. The caller holds the account's lock (no two of one kind)."""
    if request.key_id is not None:
        owner = session.scalar(select(ApiKey.account_id).where(ApiKey.id == request.key_id))
        if owner != account_id:
            raise InvalidInput(
                "No such key in this account.", fields={"key_id": "not a key of this account"}
            )
    now = utcnow()
    existing = session.scalar(
        select(Budget).where(
            Budget.account_id == account_id,
            Budget.scope == request.scope,
            Budget.period == request.period,
            Budget.key_id.is_(None) if request.key_id is None else Budget.key_id == request.key_id,
        )
    )
    amount = to_units(request.credits)
    if existing is not None:
        existing.amount, existing.updated_at = amount, now
        session.flush()
        return Saved(existing, created=False)
    budget = Budget(
        account_id=account_id,
        scope=request.scope,
        key_id=request.key_id,
        period=request.period,
        amount=amount,
        created_at=now,
        updated_at=now,
    )
    session.add(budget)
    session.flush()
    return Saved(budget, created=True)


def list_budgets(*, session: Session, account_id: uuid.UUID) -> Sequence[Budget]:
    return list(
        session.scalars(
            select(Budget).where(Budget.account_id == account_id).order_by(Budget.created_at)
        )
    )


def delete_budget(*, session: Session, account_id: uuid.UUID, budget_id: str) -> None:
    budget = accounts.get_owned(
        session=session, model=Budget, account_id=account_id, raw_id=budget_id, noun="budget"
    )
    session.delete(budget)
    session.flush()
