"""The append-only credit ledger: topup, hold, capture, release.

Amounts are integers in hundredths of a credit. Balance, held and available are
derived from the entries, never stored:
    balance   = topups − captures
    held      = holds − captures − releases   (a settled hold is captured + released in full)
    available = balance − held
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import ColumnElement, bindparam, case, func, select
from sqlalchemy.orm import Session

from shared import metrics
from shared.db import after_commit
from shared.errors import InsufficientCredits
from shared.models import Account, LedgerEntry

UNITS_PER_CREDIT = 100


def to_units(credits: Decimal) -> int:
    """Credits (rounded half-up to the cent) as ledger units."""
    return int((credits * UNITS_PER_CREDIT).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_credits(units: int) -> float:
    """Ledger units as a number for JSON; two decimals are exact in a float's repr."""
    return float(Decimal(units) / UNITS_PER_CREDIT)


@dataclass(frozen=True)
class Balance:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


def _count(session: Session, kind: str, units: int) -> None:
    after_commit(session, lambda: metrics.CREDITS.labels(kind).inc(units / UNITS_PER_CREDIT))


def _total(kind: str) -> ColumnElement[int]:
    amount = case((LedgerEntry.kind == kind, LedgerEntry.amount), else_=0)
    return func.coalesce(func.sum(amount), 0)


# Built once: rebuilding this expression on every submit was a sixth of the API's CPU.
_TOTALS = select(_total("topup"), _total("hold"), _total("capture"), _total("release")).where(
    LedgerEntry.account_id == bindparam("account_id")
)


def balance(*, session: Session, account_id: uuid.UUID) -> Balance:
    topups, holds, captures, releases = session.execute(_TOTALS, {"account_id": account_id}).one()
    return Balance(balance=topups - captures, held=holds - captures - releases)


def top_up(*, session: Session, account_id: uuid.UUID, credits: Decimal, note: str) -> None:
    session.add(
        LedgerEntry(account_id=account_id, kind="topup", amount=to_units(credits), note=note)
    )
    session.flush()


def lock_account(*, session: Session, account_id: uuid.UUID) -> None:
    """Lock the account row until the transaction ends (SQLite: BEGIN IMMEDIATE already has)."""
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())


def place_hold(*, session: Session, account_id: uuid.UUID, job_id: uuid.UUID, amount: int) -> None:
    """Hold `amount` for a job, or raise `InsufficientCredits`.

    The caller holds `lock_account`, so concurrent submits for one account check and
    hold one after the other and can never overdraw.
    """
    available = balance(session=session, account_id=account_id).available
    if available < amount:
        raise InsufficientCredits(
            f"This job needs {to_credits(amount)} credits; {to_credits(available)} are available.",
            estimated_credits=to_credits(amount),
            available_credits=to_credits(available),
            pricing_url="/v1/video/pricing",
        )
    session.add(LedgerEntry(account_id=account_id, job_id=job_id, kind="hold", amount=amount))
    session.flush()
    _count(session, "held", amount)


def _hold_amount(session: Session, job_id: uuid.UUID) -> int:
    return session.scalar(
        select(LedgerEntry.amount).where(LedgerEntry.job_id == job_id, LedgerEntry.kind == "hold")
    )


def capture(*, session: Session, account_id: uuid.UUID, job_id: uuid.UUID, amount: int) -> int:
    """Charge up to the hold for a delivered job and release the rest; returns the charge.

    Callers make this run once per job by a conditional status update in the same
    transaction; the unique (job_id, kind) constraint is the last line of defence.
    """
    held = _hold_amount(session, job_id)
    charged = min(amount, held)
    session.add(LedgerEntry(account_id=account_id, job_id=job_id, kind="capture", amount=charged))
    if held > charged:
        session.add(
            LedgerEntry(account_id=account_id, job_id=job_id, kind="release", amount=held - charged)
        )
        _count(session, "released", held - charged)
    session.flush()
    _count(session, "captured", charged)
    return charged


def release(*, session: Session, account_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Give back a job's whole hold (failed or cancelled: nothing is charged)."""
    held = _hold_amount(session, job_id)
    session.add(LedgerEntry(account_id=account_id, job_id=job_id, kind="release", amount=held))
    session.flush()
    _count(session, "released", held)


def entries(*, session: Session, account_id: uuid.UUID, limit: int = 100) -> list[LedgerEntry]:
    return list(
        session.scalars(
            select(LedgerEntry)
            .where(LedgerEntry.account_id == account_id)
            .order_by(LedgerEntry.created_at.desc(), LedgerEntry.id)
            .limit(limit)
        )
    )
