"""`shared.db.Prepared`: the submit's statements run on the driver's connection behave as
SQLAlchemy's execution did, on PostgreSQL and on SQLite (the embedded default)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import bindparam, event, exc, insert, select, update

from shared import accounts
from shared.accounts.models import Account, ApiKey
from shared.config import Settings
from shared.db import Database, Prepared, utcnow
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from tests.helpers import new_job

_INSERT_ACCOUNT = Prepared(insert(Account))  # no values: the row's keys are its columns
_KEY_PREFIX = Prepared(
    select(ApiKey.display_prefix).where(ApiKey.account_id == bindparam("account_id"))
)
# A literal None among the values is the statement's own; the status comes back an enum.
_CANCEL = Prepared(
    update(Job)
    .where(Job.id == bindparam("job_id"))
    .values(status=JobStatus.CANCELLED, due_at=None)
    .returning(Job.status, Job.due_at)
)
_NAMES = Prepared(select(Account.name).where(Account.id.in_(bindparam("ids", expanding=True))))


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


def test_an_update_returns_its_rows_as_their_column_types_read_them(
    db: Database, settings: Settings
) -> None:
    with db.transaction() as session:
        account = accounts.create_account(session=session, name="prepared", credits=Decimal(10))
        job = new_job(session, settings, account.account_id, "x")
        assert job.due_at is not None
        rows = _CANCEL.rows(session.connection(), {"job_id": job.id})
    assert [tuple(row) for row in rows] == [(JobStatus.CANCELLED, None)]
    assert isinstance(rows[0][0], JobStatus)


def test_an_expanding_in_is_rendered_for_its_list(db: Database) -> None:
    with db.transaction() as session:
        made = [
            accounts.create_account(session=session, name=name, credits=Decimal(0)).account_id
            for name in ("one", "two", "three")
        ]
        rows = _NAMES.rows(session.connection(), {"ids": made[:2]})
    assert sorted(name for (name,) in rows) == ["one", "two"]


def test_a_one_statement_block_commits_on_its_own(db: Database) -> None:
    account_id = uuid.uuid4()
    with db.statement() as connection:
        _INSERT_ACCOUNT.rows(connection, _row(account_id))
    with db.transaction() as session:
        assert session.get(Account, account_id) is not None


def test_a_failed_statement_leaves_the_next_block_clean(db: Database) -> None:
    account_id = uuid.uuid4()
    with db.statement() as connection:
        _INSERT_ACCOUNT.rows(connection, _row(account_id))
    with pytest.raises(exc.IntegrityError), db.statement() as connection:
        _INSERT_ACCOUNT.rows(connection, _row(account_id))  # the same id again
    with db.statement() as connection:
        assert _NAMES.rows(connection, {"ids": [account_id]}) == [("prepared",)]


# A key and (carried) its account, each insert's values named: one statement on PostgreSQL.
_INSERT_KEY = Prepared(
    insert(ApiKey).values(
        id=bindparam("key_id"),
        account_id=bindparam("account"),
        key_hash=bindparam("key_hash"),
        display_prefix=bindparam("prefix"),
        created_at=bindparam("created_at"),
    )
)
_INSERT_NAMED_ACCOUNT = Prepared(
    insert(Account).values(
        id=bindparam("account"), name=bindparam("name"), created_at=bindparam("created_at")
    )
)


def test_carried_inserts_are_written_with_the_statement_in_one_on_postgresql(
    db: Database, statements: Callable[[], list[str]]
) -> None:
    """A submit writes its job, the job's event and its credit hold this way: on PostgreSQL
    one round trip (a foreign key between the rows holds at the statement's end); SQLite
    has no INSERT in a WITH clause, so each insert runs alone, first."""
    account_id, now = uuid.uuid4(), utcnow()
    key = {"key_id": uuid.uuid4(), "account": account_id, "key_hash": uuid.uuid4().hex,
           "prefix": "nv_sk_carry", "created_at": now}  # fmt: skip
    account = {"account": account_id, "name": "carried", "created_at": now}
    with db.transaction() as session:
        _INSERT_KEY.rows_with(session.connection(), key, [(_INSERT_NAMED_ACCOUNT, account)])
    written = [sql for sql in statements() if not sql.startswith("BEGIN")]
    assert len(written) == (1 if db.is_postgres else 2)
    with db.transaction() as session:
        assert _KEY_PREFIX.rows(session.connection(), {"account_id": account_id}) == [
            ("nv_sk_carry",)
        ]
        carried = session.get_one(Account, account_id)
        assert (carried.name, carried.scheduling_weight) == ("carried", 1)  # its default too


def test_carried_inserts_may_not_give_one_name_two_values(db: Database) -> None:
    account_id, now = uuid.uuid4(), utcnow()
    key = {"key_id": uuid.uuid4(), "account": account_id, "key_hash": uuid.uuid4().hex,
           "prefix": "nv_sk_twice", "created_at": now}  # fmt: skip
    other = {"account": uuid.uuid4(), "name": "other", "created_at": now}
    with pytest.raises(ValueError, match="'account' has two values"), db.transaction() as s:
        _INSERT_KEY.rows_with(s.connection(), key, [(_INSERT_NAMED_ACCOUNT, other)])


def _row(account_id: uuid.UUID) -> dict[str, Any]:
    return {"id": account_id, "name": "prepared", "created_at": utcnow()}
