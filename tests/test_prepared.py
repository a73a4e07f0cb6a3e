"""`shared.db.Prepared`: the submit's statements run on the driver's connection behave as
SQLAlchemy's execution did, on PostgreSQL and on SQLite (the embedded default)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, insert, select

from shared import accounts
from shared.accounts.models import Account, ApiKey
from shared.db import Database, Prepared, utcnow

_INSERT_ACCOUNT = Prepared(insert(Account))  # no values: the row's keys are its columns
_KEY_PREFIX = Prepared(
    select(ApiKey.display_prefix).where(ApiKey.account_id == bindparam("account_id"))
)


@pytest.fixture
def statements(db: Database) -> Iterator[Callable[[], list[str]]]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    yield lambda: seen
    event.remove(db.engine, "before_cursor_execute", count)


def test_insert_without_returning_gives_no_rows_and_the_row_is_written(
    db: Database, statements: Callable[[], list[str]]
) -> None:
    with db.transaction() as session:
        new = accounts.create_account(session=session, name="prepared", credits=Decimal(0))
        other = uuid.uuid4()
        rows = _INSERT_ACCOUNT.rows(session.connection(), _row(other))
        found = _KEY_PREFIX.rows(session.connection(), {"account_id": new.account_id})
    assert rows == []
    assert [tuple(row) for row in found] == [(new.api_key[:12],)]
    with db.transaction() as session:
        assert session.get(Account, other) is not None
    assert any(statement.lstrip().upper().startswith("INSERT") for statement in statements())


def test_a_driver_error_is_sqlalchemys_and_rolls_back(db: Database) -> None:
    with db.transaction() as session:
        new = accounts.create_account(session=session, name="prepared", credits=Decimal(0))
    with pytest.raises(exc.IntegrityError), db.transaction() as session:
        _INSERT_ACCOUNT.rows(session.connection(), _row(new.account_id))  # a duplicate id
    with db.transaction() as session:  # the pool still serves a working connection
        assert session.get(Account, new.account_id) is not None


def _row(account_id: uuid.UUID) -> dict[str, Any]:
    return {"id": account_id, "name": "prepared", "created_at": utcnow()}
