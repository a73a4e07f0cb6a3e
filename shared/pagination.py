"""Cursor pagination, newest first, for every list the API pages with `limit` and `cursor`
(`GET /v1/jobs`, `GET /v1/credits`).

A cursor is the last row's `(created_at, id)`, opaque to clients: the next page holds the
rows strictly older than it in that order, so rows written meanwhile neither repeat nor
shift a page the way an offset would.
"""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Protocol, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared.errors import InvalidInput


class Dated(Protocol):
    """A row a cursor can point at."""

    @property
    def created_at(self) -> datetime: ...

    @property
    def id(self) -> uuid.UUID: ...


RowT = TypeVar("RowT", bound=Dated)


def encode_cursor(row: Dated) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("cursor time without a zone")
        return moment, uuid.UUID(row_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("Bad cursor.", fields={"cursor": "use next_cursor as given"}) from None


def newest_first(
    query: Select[RowT],
    *,
    session: Session,
    created_at: InstrumentedAttribute[datetime],
    row_id: InstrumentedAttribute[uuid.UUID],
    limit: int,
    cursor: str | None,
) -> tuple[list[RowT], str | None]:
    """One page of `query`'s rows, newest first, and the cursor of the next page (None on
    the last). One row more than the page is read to know whether another page follows."""
    if cursor is not None:
        after_time, after_id = decode_cursor(cursor)
        query = query.where(
            or_(created_at < after_time, and_(created_at == after_time, row_id < after_id))
        )
    newest = query.order_by(created_at.desc(), row_id.desc())
    rows = list(session.scalars(newest.limit(limit + 1)))
    page = rows[:limit]
    return page, (encode_cursor(page[-1]) if len(rows) > limit else None)
