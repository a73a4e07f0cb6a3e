"""Usage: what an account was charged in a time range, and what the provider billed for it,
summed from the ledger by model, by day or by API key (`GET /v1/usage`, `naive usage`).

What counts, and where, decided here:
- **Charged** is the ledger's captures minus its refunds whose entry time is in
  `[start, end)`: the total over all groups is exactly what the ledger says the account was
  charged in that range (holds and releases move no money). A batch's aggregate hold has no
  job; its items' captures each carry their job, so they count like any job's.
- **Jobs** are the captures in the range (one per charged job); a refund in the range
  lowers the charge of its group without being a job of it (its capture may be older).
- **Provider units and cost** are those of the jobs captured in the range, each once: what
  the provider billed for them, whether or not a refund followed (it billed us anyway).
  Jobs whose provider reported no units are counted in `jobs_without_units`.
- **Groups**: the job's model; the day (UTC) of the ledger entry; the key that submitted
  the job (None for jobs made before keys were recorded).

The sums run in SQL, grouped by one expression per dialect for the day (PostgreSQL's
`to_char` of the UTC time, SQLite's `strftime` of the stored UTC text). Credits stay
integers in hundredths, so sums are exact; provider units and dollars are floats, rounded
to a millionth after summing.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, and_, bindparam, case, func, select
from sqlalchemy.orm import Session

from shared.accounts.models import ApiKey
from shared.errors import InvalidInput
from shared.jobs.models import Job
from shared.ledger.credits import LedgerKind
from shared.ledger.models import LedgerEntry

GroupBy = Literal["model", "day", "key"]
GROUP_BYS: tuple[GroupBy, ...] = ("model", "day", "key")
MILLIONTH = Decimal("0.000001")


@dataclass(frozen=True)
class UsageRow:
    """One group's sums; `charged` in ledger units (hundredths of a credit)."""

    group: str | None
    charged: int
    jobs: int
    provider_units: Decimal
    provider_cost_usd: Decimal
    jobs_without_units: int
    key_prefix: str | None = None  # the key's display prefix, when grouped by key

    def __add__(self, other: UsageRow) -> UsageRow:
        return UsageRow(
            group=None,
            charged=self.charged + other.charged,
            jobs=self.jobs + other.jobs,
            provider_units=self.provider_units + other.provider_units,
            provider_cost_usd=self.provider_cost_usd + other.provider_cost_usd,
            jobs_without_units=self.jobs_without_units + other.jobs_without_units,
        )


NOTHING = UsageRow(None, 0, 0, Decimal(0), Decimal(0), 0)


@dataclass(frozen=True)
class Usage:
    start: datetime
    end: datetime
    group_by: GroupBy
    rows: list[UsageRow]

    @property
    def totals(self) -> UsageRow:
        """The sum of the rows (so of every capture and refund in the range)."""
        return sum(self.rows, NOTHING)


def month_of(moment: datetime) -> tuple[datetime, datetime]:
    """The calendar month (UTC) that holds `moment`: its first instant and the next month's."""
    start = moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    if start.month == 12:
        return start, start.replace(year=start.year + 1, month=1)
    return start, start.replace(month=start.month + 1)


def time_range(
    start: datetime | None, end: datetime | None, *, now: datetime
) -> tuple[datetime, datetime]:
    """The range asked for: `start` defaults to the first instant of the current month (UTC),
    `end` to the first of the next; one that ends before it starts is refused, naming `to`."""
    month_start, month_end = month_of(now)
    start = month_start if start is None else start
    end = month_end if end is None else end
    if end < start:
        raise InvalidInput(
            "`to` is before `from`.", fields={"to": f"must not be before {start.isoformat()}"}
        )
    return start, end


def _day(session: Session) -> ColumnElement[str]:
    """The UTC day of a ledger entry as `YYYY-MM-DD`, in the session's dialect."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", LedgerEntry.created_at), "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", LedgerEntry.created_at)  # SQLite stores UTC as text


def _query(session: Session, group_by: GroupBy) -> Select[Any]:
    captured = LedgerEntry.kind == LedgerKind.CAPTURE.value
    columns = [
        func.sum(case((captured, LedgerEntry.amount), else_=-LedgerEntry.amount)),
        func.sum(case((captured, 1), else_=0)),
        func.sum(case((captured, Job.provider_units))),
        func.sum(case((captured, Job.provider_cost_usd))),
        func.sum(case((and_(captured, Job.provider_units.is_(None)), 1), else_=0)),
    ]
    groups: list[Any]  # columns, or the day's expression
    if group_by == "model":
        groups = [Job.model]
    elif group_by == "day":
        groups = [_day(session)]
    else:
        groups = [Job.api_key_id, ApiKey.display_prefix]
    query = (
        select(*groups, *columns)
        .select_from(LedgerEntry)
        .outerjoin(Job, Job.id == LedgerEntry.job_id)
        .where(
            LedgerEntry.account_id == bindparam("account_id"),
            LedgerEntry.kind.in_([LedgerKind.CAPTURE.value, LedgerKind.REFUND.value]),
            LedgerEntry.created_at >= bindparam("start"),
            LedgerEntry.created_at < bindparam("end"),
        )
        .group_by(*groups)
    )
    if group_by == "key":
        query = query.outerjoin(ApiKey, ApiKey.id == Job.api_key_id)
    return query


def usage(
    *,
    session: Session,
    account_id: uuid.UUID,
    start: datetime,
    end: datetime,
    group_by: GroupBy,
) -> Usage:
    """The account's usage in `[start, end)` by `group_by`, one row per group, ordered by
    group (jobs without a model or key last)."""
    result = session.execute(
        _query(session, group_by), {"account_id": account_id, "start": start, "end": end}
    )
    rows = []
    for record in result:
        if group_by == "key":
            key_id, prefix, *sums = record
            group, extra = (None if key_id is None else str(key_id)), {"key_prefix": prefix}
        else:
            group, *sums = record
            extra = {}
        charged, jobs, units, cost, without_units = sums
        rows.append(
            UsageRow(
                group=group,
                charged=int(charged),
                jobs=int(jobs),
                provider_units=_millionths(units),
                provider_cost_usd=_millionths(cost),
                jobs_without_units=int(without_units),
                **extra,
            )
        )
    rows.sort(key=lambda row: (row.group is None, row.group or ""))
    return Usage(start=start, end=end, group_by=group_by, rows=rows)


def _millionths(value: Any) -> Decimal:
    """A float sum (None: nothing to sum) as a Decimal, to a millionth."""
    return Decimal(0) if value is None else Decimal(repr(float(value))).quantize(MILLIONTH)
