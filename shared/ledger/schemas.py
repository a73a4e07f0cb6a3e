"""The credits' wire shapes: the balances and the ledger entries they derive from."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from shared.ledger.credits import Balance, LedgerKind, to_credits
from shared.wire import Closed, Open, QueryInt

if TYPE_CHECKING:  # the rows are read, not imported: clients use these shapes too
    from shared.ledger.models import LedgerEntry as LedgerRow

CREDITS = "Credits, to two decimals."


class LedgerEntry(Open):
    id: uuid.UUID
    kind: LedgerKind
    amount: float = Field(description=CREDITS)
    job_id: uuid.UUID | None
    note: str | None
    created_at: datetime

    @classmethod
    def of(cls, entry: LedgerRow) -> LedgerEntry:
        return cls(
            id=entry.id,
            kind=LedgerKind(entry.kind),
            amount=to_credits(entry.amount),
            job_id=entry.job_id,
            note=entry.note,
            created_at=entry.created_at,
        )


class Credits(Open):
    """`GET /v1/credits`: balance = top-ups − captures + refunds; available = balance − held."""

    balance: float = Field(description=CREDITS)
    held: float = Field(description=CREDITS)
    available: float = Field(description=CREDITS)
    credit_value_usd: float
    entries: list[LedgerEntry]

    @classmethod
    def of(cls, totals: Balance, entries: list[LedgerRow], credit_value_usd: float) -> Credits:
        return cls(
            balance=to_credits(totals.balance),
            held=to_credits(totals.held),
            available=to_credits(totals.available),
            credit_value_usd=credit_value_usd,
            entries=[LedgerEntry.of(entry) for entry in entries],
        )


class CreditGrant(Closed):
    """`POST /v1/admin/accounts/{id}/credits` and `naive admin grant-credits`: a top-up."""

    credits: Decimal = Field(
        gt=0, le=1_000_000, decimal_places=2, description="Credits to add, to two decimals."
    )
    note: str = Field(
        default="granted by an operator", max_length=200, description="Kept on the entry."
    )


class CreditsGranted(Open):
    """The top-up's ledger entry and the account's credits after it."""

    account_id: uuid.UUID
    entry: LedgerEntry
    balance: float = Field(description=CREDITS)
    held: float = Field(description=CREDITS)
    available: float = Field(description=CREDITS)

    @classmethod
    def of(cls, account_id: uuid.UUID, entry: LedgerRow, totals: Balance) -> CreditsGranted:
        return cls(
            account_id=account_id,
            entry=LedgerEntry.of(entry),
            balance=to_credits(totals.balance),
            held=to_credits(totals.held),
            available=to_credits(totals.available),
        )


class CreditsQuery(BaseModel):
    limit: QueryInt = Field(default=100, ge=1, le=1000, description="Ledger entries, newest first.")
