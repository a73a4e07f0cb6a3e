"""A database connection the server has ended is replaced, not used for a transaction.

The API no longer pings each connection it takes from the pool (`pool_pre_ping` cost a
round trip per transaction); a connection whose backend was terminated is noticed at
checkout without a round trip and the pool connects once more in its place. A worker
process holds its connections between transactions and checks them the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from flask import Flask
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from services.api.app import create_app
from shared import accounts
from shared.accounts.models import Account
from shared.config import load_settings
from shared.db import Database
from tests.helpers import KLING_T2V
from tests.stack import PG_ADMIN_URL, scratch_database

BODY = {"model": KLING_T2V, "input": {"prompt": "After the restart [sim latency=60]"}}


@pytest.fixture
def private_app(test_env: dict[str, str]) -> Iterator[Flask]:
    """The API on a database of its own (its backends may be terminated), sending to a
    queue no worker reads."""
    with scratch_database() as url:
        app = create_app(
            load_settings(
                {
                    **test_env,
                    "DATABASE_URL": url,
                    "CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-idle",
                }
            )
        )
        yield app
        app.extensions["naive"].db.dispose()


def _terminate_backends(database_url: str) -> int:
    """End every server process of the database, waiting until each is gone."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchall()
    return sum(1 for (done,) in ended if done)


def test_submits_succeed_after_the_database_ended_every_pooled_connection(
    private_app: Flask,
) -> None:
    db = private_app.extensions["naive"].db
    with db.transaction() as session:
        key = accounts.create_account(session=session, name="t", credits=Decimal(100)).api_key
    headers = {"Authorization": f"Bearer {key}"}
    client = private_app.test_client()
    first = client.post("/v1/video/generate", json=BODY, headers=headers)
    assert first.status_code == 202

    assert _terminate_backends(db.url) >= 1
    again = client.post("/v1/video/generate", json=BODY, headers=headers)
    assert again.status_code == 202, again.json
    listed = client.get("/v1/jobs", headers=headers).json
    assert [job["id"] for job in listed["data"]] == [again.json["job_id"], first.json["job_id"]]


@pytest.fixture
def held() -> Iterator[Database]:
    """A database on PostgreSQL: its connections are kept between transactions."""
    with scratch_database() as url:
        db = Database(url)
        yield db
        db.dispose()


def _backend(db: Database, *, one_statement: bool = False) -> int:
    """The server process of the connection a transaction ran on; a claim's (one statement)
    runs in autocommit, without BEGIN and COMMIT."""
    pid = text("SELECT pg_backend_pid()")
    if one_statement:
        with db.statement() as connection:
            assert connection.connection.dbapi_connection.autocommit
            return int(connection.execute(pid).scalar_one())
    with db.transaction() as session:
        connection = session.connection()
        assert not connection.connection.dbapi_connection.autocommit
        return int(connection.execute(pid).scalar_one())


def test_a_worker_keeps_its_connections_between_transactions(held: Database) -> None:
    assert _backend(held) == _backend(held)
    assert _backend(held, one_statement=True) == _backend(held, one_statement=True)


def test_a_worker_replaces_held_connections_the_database_ended(held: Database) -> None:
    before = {_backend(held), _backend(held, one_statement=True)}
    assert _terminate_backends(held.url) == 2

    after = {_backend(held), _backend(held, one_statement=True)}
    assert after.isdisjoint(before)


def test_a_transaction_cut_by_the_database_fails_alone(held: Database) -> None:
    """The transaction whose connection died fails; the next one gets a new connection."""
    with pytest.raises(OperationalError), held.transaction() as session:
        session.execute(text("SELECT 1"))
        _terminate_backends(held.url)
        session.execute(text("SELECT 1"))
    assert _backend(held) > 0


def test_a_held_session_reads_what_others_wrote_since(held: Database) -> None:
    """A worker's transactions share one session per connection: what one transaction
    loaded (and the caller still holds) is not the answer of the next one's read."""
    with held.transaction() as session:
        account_id = accounts.create_account(
            session=session, name="before", credits=Decimal(1)
        ).account_id
    with held.transaction() as session:
        loaded = session.get_one(Account, account_id)
    with psycopg.connect(held.url.replace("+psycopg", ""), autocommit=True) as other:
        other.execute("UPDATE accounts SET name = 'after'")
    with held.transaction() as session:
        assert session.get_one(Account, account_id).name == "after"
    assert loaded.name == "before"  # the first read's object, kept alive until here


def test_a_transaction_inside_another_commits_with_it_or_not_at_all(held: Database) -> None:
    """A block that opens a transaction inside another (same thread, same held connection)
    joins it: the outer block's failure undoes the inner one's work too."""
    with pytest.raises(RuntimeError), held.transaction() as outer:
        outer.execute(text("CREATE TABLE marks (name text)"))
        with held.transaction() as inner:
            inner.execute(text("INSERT INTO marks VALUES ('inner')"))
        raise RuntimeError("the outer block fails after the inner one ended")
    with held.transaction() as session:
        exists = session.execute(text("SELECT to_regclass('marks')")).scalar_one()
    assert exists is None

    with held.transaction() as outer:
        outer.execute(text("CREATE TABLE marks (name text)"))
        with held.transaction() as inner:
            inner.execute(text("INSERT INTO marks VALUES ('inner')"))
        outer.execute(text("INSERT INTO marks VALUES ('outer')"))
    with held.transaction() as session:
        names = session.execute(text("SELECT name FROM marks ORDER BY name")).scalars().all()
    assert names == ["inner", "outer"]


def test_a_failed_transaction_leaves_the_next_one_clean(held: Database) -> None:
    with pytest.raises(RuntimeError), held.transaction() as session:
        session.execute(text("CREATE TABLE gone (name text)"))
        raise RuntimeError("fails")
    with held.transaction() as session:
        assert session.execute(text("SELECT to_regclass('gone')")).scalar_one() is None
        assert not session.identity_map


def test_transactions_at_once_each_have_a_connection_of_their_own(held: Database) -> None:
    """Requests served at the same time (threads, or greenlets under gevent) never share a
    held connection; the connections they used are kept for the next ones."""
    both_inside = threading.Barrier(2, timeout=10)
    backends: list[int] = []

    def transaction() -> None:
        with held.transaction() as session:
            backends.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            both_inside.wait()

    threads = [threading.Thread(target=transaction) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=15)
    assert len(set(backends)) == 2
    assert {_backend(held) for _ in range(4)} <= set(backends)


def test_a_rollback_that_fails_leaves_the_next_transaction_clean(
    held: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed block whose rollback fails too (a connection lost mid-rollback) does not leave
    its connection taken: the thread's next transaction is a new one, not the broken one's."""

    def rollback_fails(session: Session) -> None:
        raise OperationalError("ROLLBACK", None, Exception("connection lost"))

    with pytest.raises(OperationalError), held.transaction() as session:
        session.execute(text("CREATE TABLE half (name text)"))
        monkeypatch.setattr(Session, "rollback", rollback_fails)
        raise RuntimeError("the block fails")
    monkeypatch.undo()
    with held.transaction() as session:
        assert session.execute(text("SELECT to_regclass('half')")).scalar_one() is None
