"""The append-only credit ledger: topup, hold, capture, release, refund.

Amounts are integers in hundredths of a credit. Balance, held and available are
derived from the entries, never stored:
    balance   = topups − captures + refunds
    held      = holds − captures − releases   (a settled hold is captured + released in full)
    available = balance − held
A refund reverses a capture (a delivered video that could not be stored for good): the
ledger stays append-only.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Uuid,
    bindparam,
    case,
    exists,
    func,
    insert,
    literal,
    select,
)
from sqlalchemy.orm import Session

from shared import metrics, pagination
from shared.accounts.models import Account
from shared.budgets.models import Budget
from shared.db import Prepared, UTCDateTime, after_commit, utcnow
from shared.errors import InsufficientCredits, NotFound
from shared.ledger.credits import (
    UNITS_PER_CREDIT,
    Balance,
    LedgerKind,
    to_credits,
    to_units,
)
from shared.ledger.models import LedgerEntry

__all__ = ["Balance", "LedgerKind", "to_credits", "to_units"]  # also read from here


def _count(session: Session, kind: str, units: int) -> None:
    after_commit(
        session, lambda: metrics.child(metrics.CREDITS, kind).inc(units / UNITS_PER_CREDIT)
    )


def _total(kind: LedgerKind) -> ColumnElement[int]:
    amount = case((LedgerEntry.kind == kind.value, LedgerEntry.amount), else_=0)
    return func.coalesce(func.sum(amount), 0)


# Built once: rebuilding this expression on every submit was a sixth of the API's CPU.
_TOTALS = select(
    _total(LedgerKind.TOPUP),
    _total(LedgerKind.HOLD),
    _total(LedgerKind.CAPTURE),
    _total(LedgerKind.RELEASE),
    _total(LedgerKind.REFUND),
).where(LedgerEntry.account_id == bindparam("account_id"))


def balance(*, session: Session, account_id: uuid.UUID) -> Balance:
    topups, holds, captures, releases, refunds = session.execute(
        _TOTALS, {"account_id": account_id}
    ).one()
    return Balance(balance=topups - captures + refunds, held=holds - captures - releases)


def top_up(*, session: Session, account_id: uuid.UUID, credits: Decimal, note: str) -> LedgerEntry:
    entry = LedgerEntry(
        account_id=account_id, kind=LedgerKind.TOPUP.value, amount=to_units(credits), note=note
    )
    session.add(entry)
    session.flush()
    return entry


def grant(
    *, session: Session, account_id: uuid.UUID, credits: Decimal, note: str
) -> tuple[LedgerEntry, Balance]:
    """An operator's top-up of an existing account (`NotFound` otherwise): its `topup`
    entry and the account's credits after it."""
    if session.get(Account, account_id) is None:
        raise NotFound(f"No account {account_id}.")
    entry = top_up(session=session, account_id=account_id, credits=credits, note=note)
    _count(session, "granted", entry.amount)
    return entry, balance(session=session, account_id=account_id)


def grant_command(account_id: uuid.UUID | str, credits: str = "N") -> str:
    """The operator's command that adds credits to an account."""
    return f"naive admin grant-credits --account {account_id} --credits {credits}"


def topup_hint(account_id: uuid.UUID) -> str:
    """How an account gets credits (the 402's hint)."""
    return (
        f"To add credits, an operator runs `{grant_command(account_id)}` (or POST "
        f"/v1/admin/accounts/{account_id}/credits with the operator token); GET /v1/credits "
        "shows the balance."
    )


_ACCOUNTS = Account.__table__
_LOCK_ACCOUNT = Prepared(
    select(
        _ACCOUNTS.c.concurrency_cap,
        exists().where(Budget.__table__.c.account_id == _ACCOUNTS.c.id),
    )
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .with_for_update(of=_ACCOUNTS)
)


@dataclass(frozen=True)
class LockedAccount:
    """What a submit needs to know of the account it locked."""

    concurrency_cap: int | None  # fair scheduling: its own cap, if any
    has_budgets: bool  # whether the submit must check budgets


_ENTRIES = LedgerEntry.__table__
# available = topups + refunds + releases − holds (captures cancel out: each one moves
# credits from held to spent).
_AVAILABLE = (
    select(
        func.coalesce(
            func.sum(
                case(
                    (_ENTRIES.c.kind == LedgerKind.HOLD.value, -_ENTRIES.c.amount),
                    (_ENTRIES.c.kind == LedgerKind.CAPTURE.value, 0),
                    else_=_ENTRIES.c.amount,
                )
            ),
            0,
        )
    )
    .where(_ENTRIES.c.account_id == bindparam("hold_account", type_=Uuid()))
    .scalar_subquery()
)
# The hold, inserted only if the account can afford it: the check and the write in one
# statement, compiled once and run on the driver's connection (every submit runs it).
_HOLD_AMOUNT = bindparam("hold_amount", type_=BigInteger())
_INSERT_HOLD = Prepared(
    insert(LedgerEntry)
    .from_select(
        ["id", "account_id", "job_id", "batch_id", "kind", "amount", "created_at"],
        select(
            bindparam("hold_id", type_=Uuid()),
            bindparam("hold_account", type_=Uuid()),
            bindparam("hold_job", type_=Uuid()),
            bindparam("hold_batch", type_=Uuid()),
            literal(LedgerKind.HOLD.value),
            _HOLD_AMOUNT,
            bindparam("hold_at", type_=UTCDateTime()),
        ).where(_AVAILABLE >= _HOLD_AMOUNT),
    )
    .returning(_ENTRIES.c.id)
)


def lock_account(*, session: Session, account_id: uuid.UUID) -> LockedAccount:
    """Lock the account row until the transaction ends (SQLite: BEGIN IMMEDIATE already
    has), reading what a submit needs of it in the same statement."""
    rows = _LOCK_ACCOUNT.rows(session.connection(), {"account_id": account_id})
    if not rows:
        raise NotFound(f"No account {account_id}.")
    cap, has_budgets = rows[0]
    return LockedAccount(cap, bool(has_budgets))


def place_hold(
    *,
    session: Session,
    account_id: uuid.UUID,
    amount: int,
    job_id: uuid.UUID | None = None,
    batch_id: uuid.UUID | None = None,
    written_with: Sequence[tuple[Prepared, Mapping[str, Any]]] = (),
) -> None:
    """Hold `amount` for a job, or for all the jobs of a batch at once (each item's capture
    and release then carry its job), or raise `InsufficientCredits`.

    The caller holds `lock_account`, so concurrent submits for one account check and
    hold one after the other and can never overdraw. `written_with`: inserts that go
    with the hold (a new job and its first event), written in the hold's statement on
    PostgreSQL (`Prepared.rows_with`); refused, the caller's rollback takes them too.
    """
    placed = _INSERT_HOLD.rows_with(
        session.connection(),
        {
            "hold_id": uuid.uuid4(),
            "hold_account": account_id,
            "hold_job": job_id,
            "hold_batch": batch_id,
            "hold_amount": amount,
            "hold_at": utcnow(),
        },
        written_with,
    )
    if not placed:
        available = balance(session=session, account_id=account_id).available
        what = "This batch" if batch_id is not None else "This job"
        raise InsufficientCredits(
            f"{what} needs {to_credits(amount)} credits; {to_credits(available)} are available.",
            estimated_credits=to_credits(amount),
            available_credits=to_credits(available),
            pricing_url="/v1/video/pricing",
            hint=topup_hint(account_id),
        )
    _count(session, "held", amount)


def capture(
    *, session: Session, account_id: uuid.UUID, job_id: uuid.UUID, held: int, amount: int
) -> int:
    """Charge up to the hold for a delivered job and release the rest; returns the charge.

    Callers make this run once per job by a conditional status update in the same
    transaction; the unique (job_id, kind) constraint is the last line of defence.
    """
    charged = min(amount, held)
    _add_entry(session, account_id, job_id, LedgerKind.CAPTURE, charged)
    if held > charged:
        _add_entry(session, account_id, job_id, LedgerKind.RELEASE, held - charged)
        _count(session, "released", held - charged)
    _count(session, "captured", charged)
    return charged


def release(*, session: Session, account_id: uuid.UUID, job_id: uuid.UUID, held: int) -> None:
    """Give back a job's whole hold (failed or cancelled: nothing is charged)."""
    _add_entry(session, account_id, job_id, LedgerKind.RELEASE, held)
    _count(session, "released", held)


def refund(*, session: Session, account_id: uuid.UUID, job_id: uuid.UUID, charged: int) -> None:
    """Reverse a job's capture: the account is charged only for a video in its library."""
    _add_entry(session, account_id, job_id, LedgerKind.REFUND, charged)
    _count(session, "refunded", charged)


# A job's entry, compiled once and run on the driver's connection (every settlement writes
# one), not through the session's unit of work.
_INSERT_ENTRY = Prepared(insert(LedgerEntry))  # the row's keys are its columns


def _add_entry(
    session: Session, account_id: uuid.UUID, job_id: uuid.UUID, kind: LedgerKind, amount: int
) -> None:
    _INSERT_ENTRY.rows(
        session.connection(),
        {
            "id": uuid.uuid4(),
            "account_id": account_id,
            "job_id": job_id,
            "kind": kind.value,
            "amount": amount,
            "created_at": utcnow(),
        },
    )


def entries(
    *, session: Session, account_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[LedgerEntry], str | None]:
    """The account's ledger entries, newest first, and the cursor of the next page (or
    None), paged as `GET /v1/jobs` is."""
    return pagination.newest_first(
        select(LedgerEntry).where(LedgerEntry.account_id == account_id),
        session=session,
        created_at=LedgerEntry.created_at,
        row_id=LedgerEntry.id,
        limit=limit,
        cursor=cursor,
    )
