"""The credits' wire shapes: the balances and the ledger entries they derive from, and the
usage summed from them."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from shared.ledger.credits import Balance, LedgerKind, to_credits
from shared.wire import Closed, Open, QueryInt

if TYPE_CHECKING:  # the rows are read, not imported: clients use these shapes too
    from shared.ledger.models import LedgerEntry as LedgerRow
    from shared.ledger.usage import Usage as UsageData
    from shared.ledger.usage import UsageRow as UsageRowData

CREDITS = "Credits, to two decimals."


class LedgerEntry(Open):
    id: uuid.UUID
    kind: LedgerKind
    amount: float = Field(description=CREDITS)
    job_id: uuid.UUID | None
    batch_id: uuid.UUID | None = Field(
        default=None,
        description="The batch, on a batch's one hold (whose job_id is null); each of its "
        "jobs' captures and releases names the job.",
    )
    note: str | None
    created_at: datetime

    @classmethod
    def of(cls, entry: LedgerRow) -> LedgerEntry:
        return cls(
            id=entry.id,
            kind=LedgerKind(entry.kind),
            amount=to_credits(entry.amount),
            job_id=entry.job_id,
            batch_id=entry.batch_id,
            note=entry.note,
            created_at=entry.created_at,
        )


class Credits(Open):
    """`GET /v1/credits`: balance = top-ups − captures + refunds; available = balance − held.
    The balances are the account's whole ledger; `entries` is one page of it, newest first:
    follow `next_cursor` for the next page, as on `GET /v1/jobs`."""

    balance: float = Field(description=CREDITS)
    held: float = Field(description=CREDITS)
    available: float = Field(description=CREDITS)
    credit_value_usd: float
    entries: list[LedgerEntry]
    # Defaults, so that a client reads an answer of an API from before pagination as one page.
    next_cursor: str | None = Field(
        default=None,
        description="Pass as `cursor` for the next page of entries; null on the last page.",
    )
    has_more: bool = Field(default=False, description="Whether older entries follow.")

    @classmethod
    def of(
        cls,
        totals: Balance,
        entries: list[LedgerRow],
        credit_value_usd: float,
        next_cursor: str | None,
    ) -> Credits:
        return cls(
            balance=to_credits(totals.balance),
            held=to_credits(totals.held),
            available=to_credits(totals.available),
            credit_value_usd=credit_value_usd,
            entries=[LedgerEntry.of(entry) for entry in entries],
            next_cursor=next_cursor,
            has_more=next_cursor is not None,
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
    limit: QueryInt = Field(
        default=100, ge=1, le=1000, description="Page size: ledger entries, newest first."
    )
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")


# ---- usage ----------------------------------------------------------------------------

UsageGroupBy = Literal["model", "day", "key"]
CSV_MEDIA_TYPE = "text/csv"
MOMENT = (
    "An ISO 8601 date (`2026-11-01`, midnight UTC) or date-time (`2026-11-15T12:00:00Z`; "
    "without a zone, UTC)."
)


def _utc_moment(value: Any) -> Any:
    """A query's date or date-time as an aware UTC datetime (a date is its midnight, a time
    without a zone is UTC)."""
    if not isinstance(value, str):
        return value
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date or date-time") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # year 1 with a positive offset, say
        raise ValueError("is out of range") from None


Moment = Annotated[
    datetime,
    BeforeValidator(_utc_moment),
    WithJsonSchema({"type": "string", "examples": ["2026-11-01", "2026-11-15T12:00:00Z"]}),
]


class UsageQuery(BaseModel):
    """`GET /v1/usage`: the range (default: the current month, UTC) and the grouping."""

    start: Moment | None = Field(
        default=None,
        alias="from",
        description=f"Start of the range, included; default the month's first day. {MOMENT}",
    )
    end: Moment | None = Field(
        default=None,
        alias="to",
        description=f"End of the range, excluded; default the next month's first day. {MOMENT}",
    )
    group_by: UsageGroupBy = Field(
        default="model",
        description="One row per model, per day (UTC, of the ledger entry) or per API key.",
    )
    format: Literal["json", "csv"] | None = Field(
        default=None, description="`csv` for CSV; default JSON, or CSV with `Accept: text/csv`."
    )


class UsageTotals(Open):
    charged_credits: float = Field(
        description="Captures minus refunds in the range, in credits, to two decimals."
    )
    jobs: int = Field(description="Jobs charged (captured) in the range.")
    provider_units: float = Field(description="Units the provider billed for those jobs.")
    provider_cost_usd: float = Field(description="What they cost at the provider, in USD.")
    jobs_without_units: int = Field(
        description="Jobs charged whose provider reported no units (not in the two sums above)."
    )

    @classmethod
    def values(cls, row: UsageRowData) -> dict[str, Any]:
        return {
            "charged_credits": to_credits(row.charged),
            "jobs": row.jobs,
            "provider_units": float(row.provider_units),
            "provider_cost_usd": float(row.provider_cost_usd),
            "jobs_without_units": row.jobs_without_units,
        }


class _Group(Open):
    group: str | None = Field(
        description="The model id, the day (`YYYY-MM-DD`, UTC) or the API key's id (null for "
        "jobs made before the submitting key was recorded)."
    )
    key_prefix: str | None = Field(
        default=None, description="With `group_by=key`: the key's first characters."
    )


class UsageRow(UsageTotals, _Group):
    """One group's sums."""


class Usage(Open):
    """`GET /v1/usage`: charges (captures minus refunds, by ledger entry time in
    `[from, to)`) and what the provider billed for the jobs charged, per group; `totals` is
    the sum of the rows, and its `charged_credits` what the ledger says for the range."""

    model_config = ConfigDict(serialize_by_alias=True)

    start: datetime = Field(alias="from", description="Start of the range, included.")
    end: datetime = Field(alias="to", description="End of the range, excluded.")
    group_by: UsageGroupBy
    credit_value_usd: float = Field(description="What one credit is worth, in USD.")
    rows: list[UsageRow]
    totals: UsageTotals

    @classmethod
    def of(cls, usage: UsageData, credit_value_usd: float) -> Usage:
        return cls.model_validate(
            {
                "from": usage.start,
                "to": usage.end,
                "group_by": usage.group_by,
                "credit_value_usd": credit_value_usd,
                "rows": [
                    {"group": row.group, "key_prefix": row.key_prefix, **UsageTotals.values(row)}
                    for row in usage.rows
                ],
                "totals": UsageTotals.values(usage.totals),
            }
        )

    def to_csv(self) -> str:
        """One line per group under a header, then a `total` line (numbers as in JSON)."""
        group = "key_id" if self.group_by == "key" else self.group_by
        sums = list(UsageTotals.model_fields)
        header = [group, *(["key_prefix"] if self.group_by == "key" else []), *sums]
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(header)
        for row in self.rows:
            values = row.model_dump()
            writer.writerow(
                [values["group"], *([row.key_prefix] if self.group_by == "key" else [])]
                + [_plain(values[name]) for name in sums]
            )
        totals = self.totals.model_dump()
        padding = [""] if self.group_by == "key" else []
        writer.writerow(["total", *padding, *(_plain(totals[name]) for name in sums)])
        return out.getvalue()


def _plain(value: Any) -> Any:
    """A number as plain decimal text (0.000001, not 1e-06)."""
    return f"{Decimal(repr(value)):f}" if isinstance(value, float) else value
