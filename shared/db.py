"""Engine, sessions, the declarative base and the one transaction helper that the API and
the worker share. Each slice's tables are in its own `models.py` (jobs, ledger, media, …).

Domain functions take the session, flush and never commit; the request or the task
owns the transaction through `Database.transaction()` (a claim, one statement atomic on
its own, takes the connection of `Database.statement()`). Work that must only happen
once the rows are visible to others (sending a Celery task) is registered with
`after_commit` and runs after the commit, never for a rollback.
"""

from __future__ import annotations

import select
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from psycopg.types.json import Json
from sqlalchemy import JSON, DateTime, MetaData, TypeDecorator, Uuid, create_engine, event, text
from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, configure_mappers
from sqlalchemy.sql import Insert, Select, Update
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.crud import REQUIRED
from sqlalchemy.types import TypeEngine

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both PostgreSQL and SQLite (which drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _as_is(text: str) -> str:
    return text


class JSONText(TypeDecorator[str]):
    """A JSON column's value given as JSON text already (pydantic's `model_dump_json`,
    rendered in Rust): written as it is, where a dict would be built and serialized again
    in Python. Read back, the column's own type parses it."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.driver == "psycopg":  # sent with the JSON type's OID, not serialized
            return lambda text: Json(text, _as_is)
        return None  # SQLite keeps JSON as text


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, Any]: JSON,
        uuid.UUID: Uuid,
    }


_CALLBACKS = "after_commit_callbacks"


def _server_hung_up(dbapi_connection: Any) -> bool:
    """Whether an idle pooled connection has input waiting: a server that ended it (a
    terminated backend, a restart) sent its farewell and closed the socket. An idle
    healthy connection has nothing to read. One poll(2), no round trip."""
    if dbapi_connection.closed:
        return True
    poller = select.poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)
    return bool(poller.poll(0))


POOL_SIZE = 5  # connections a process keeps open (more are made for a burst, then closed)


def make_engine(database_url: str) -> Engine:
    """An engine for the URL; SQLite gets WAL, a busy timeout and write-locking transactions."""
    if not database_url.startswith("sqlite"):
        # No pool_pre_ping: its SELECT 1 was a round trip per transaction. A connection the
        # server has closed is found by `_server_hung_up` at checkout instead, and the pool
        # connects once more in its place.
        engine = create_engine(database_url, pool_size=POOL_SIZE, max_overflow=10)

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            if _server_hung_up(dbapi_connection):
                raise DisconnectionError("the database server closed this connection")

        return engine

    engine = create_engine(database_url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide when a transaction begins (SQLAlchemy docs).
        dbapi_connection.isolation_level = None
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA foreign_keys=ON")

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        # SQLite ignores SELECT … FOR UPDATE; taking the write lock at BEGIN serialises
        # the credit check and the hold the way the row lock does on PostgreSQL.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class Prepared:
    """A Core statement compiled once, then run on the driver's connection.

    SQLAlchemy's execution layer (an execution context, parameter processing, a result
    object) cost more CPU per submit than psycopg's own execute: ≈ 90 µs a statement against
    ≈ 31 µs. On PostgreSQL the statement's SQL, its fixed parameters (literals, scalar
    column defaults) and its bind processors (JSON, UTC checks) are taken from one
    compilation, and each call is one psycopg `execute` (psycopg prepares it on the server
    after a few calls) on the connection of the caller's transaction. What SQLAlchemy
    would still do is done here too: the engine's `before_cursor_execute` and
    `after_cursor_execute` listeners see the statement (the statement counters), and a
    driver error is raised as SQLAlchemy's exception, a lost connection invalidated, and
    the rows a statement returns (a SELECT, an `UPDATE … RETURNING`) have their values
    converted by the columns' types (an enum from its name, …). Other databases (SQLite,
    the embedded default), and a statement with an expanding `IN` (its SQL depends on the
    list's length), run through SQLAlchemy.

    An INSERT without values takes its columns from the parameters' keys, as
    `Connection.execute(insert(table), row)` does: it is compiled once per set of keys.
    """

    def __init__(self, statement: Select[Any] | Insert | Update) -> None:
        self.statement = statement
        self._keyed = (
            isinstance(statement, Insert)
            and statement._values is None
            and statement.select is None
            and not statement._multi_values
        )
        self._compiled: dict[tuple[str, ...] | None, _Compiled] = {}
        self._dialect: Dialect | None = None
        self._carrying: dict[tuple[Prepared, ...], Prepared] = {}

    def carrying(self, *inserts: Prepared) -> Prepared:
        """This statement with `inserts` (each with its values given) in its WITH clause:
        PostgreSQL runs them as parts of the one statement, a round trip where each alone
        costs one more (and the client's and the server's work per statement). They see
        none of each other's rows, and a foreign key between them holds: it is checked at
        the statement's end. Their parameters and this statement's are given together.
        Prepared once per combination."""
        found = self._carrying.get(inserts)
        if found is None:
            ctes = (insert.statement.cte(f"carried_{i}") for i, insert in enumerate(inserts))
            found = self._carrying[inserts] = Prepared(self.statement.add_cte(*ctes))
        return found

    def _compile(self, dialect: Dialect, keys: tuple[str, ...] | None) -> _Compiled:
        compiled = self.statement.compile(
            dialect=dialect, column_keys=list(keys) if keys is not None else None
        )
        assert isinstance(compiled, SQLCompiler)
        fixed = {  # a literal's value, None included; a bare bindparam is the caller's
            name: value
            for name, value in compiled.params.items()
            if value is not REQUIRED and not compiled.binds[name].required
        }
        for column in compiled.insert_prefetch:
            default = column.default
            if default is None or not default.is_scalar:
                raise TypeError(f"{column} needs a value: its default is not a constant")
            fixed[column.key] = default.arg  # type: ignore[attr-defined]
        processors: Any = tuple(compiled._bind_processors.items())  # one callable per name here
        found = _Compiled(
            compiled.string,
            fixed,
            processors,
            tuple(column.type for column in compiled._result_columns),
            expanding=any(bind.expanding for bind in compiled.binds.values()),
        )
        if self._dialect is not dialect:
            self._compiled.clear()
            self._dialect = dialect
        self._compiled[keys] = found
        return found

    def rows(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run the statement in `connection`'s transaction; the rows it returns, if any."""
        if connection.dialect.driver != "psycopg":
            return self._through_sqlalchemy(connection, params)
        keys = tuple(params) if self._keyed else None
        compiled = self._compiled.get(keys)
        if compiled is None or self._dialect is not connection.dialect:
            compiled = self._compile(connection.dialect, keys)
        if compiled.expanding:
            return self._through_sqlalchemy(connection, params)
        values = {**compiled.fixed, **params}
        for name, process in compiled.processors:
            values[name] = process(values[name])
        sql = compiled.sql
        events = connection._has_events or connection.engine._has_events
        before = connection.dispatch.before_cursor_execute if events else None
        after = connection.dispatch.after_cursor_execute if events else None
        cursor = None
        try:
            driver: Any = connection.connection.driver_connection
            cursor = driver.cursor()
            if before:  # an event with no listener is not dispatched (as SQLAlchemy does)
                before(connection, cursor, sql, values, None, False)
            cursor.execute(sql, values)
            if after:
                after(connection, cursor, sql, values, None, False)
            if not compiled.returned:
                return []
            return compiled.converted(connection.dialect, cursor, cursor.fetchall())
        except Exception as exc:
            connection._handle_dbapi_exception(exc, sql, values, cursor, None)
        finally:
            if cursor is not None:
                cursor.close()

    def rows_with(
        self,
        connection: Connection,
        params: Mapping[str, Any],
        carried: Sequence[tuple[Prepared, Mapping[str, Any]]],
    ) -> list[Any]:
        """`rows`, with the `carried` inserts (each a statement and its values) written as
        well: on PostgreSQL in this statement (`carrying`), elsewhere (SQLite has no INSERT
        in a WITH clause) each alone, before it. A parameter name the statements share
        must have one value."""
        if not carried:
            return self.rows(connection, params)
        merged = dict(params)
        for _, values in carried:
            for name, value in values.items():
                if merged.setdefault(name, value) != value:
                    raise ValueError(f"{name!r} has two values in one statement")
        if connection.dialect.name != "postgresql":
            for insert, values in carried:
                insert.rows(connection, values)
            return self.rows(connection, params)
        return self.carrying(*(insert for insert, _ in carried)).rows(connection, merged)

    def _through_sqlalchemy(self, connection: Connection, params: Mapping[str, Any]) -> list[Any]:
        result = connection.execute(self.statement, dict(params))
        return list(result) if result.returns_rows else []


@dataclass
class _Compiled:
    sql: str
    fixed: dict[str, Any]  # parameters the statement gives itself
    processors: tuple[tuple[str, Callable[[Any], Any]], ...]
    returned: tuple[TypeEngine[Any], ...]  # the type of each column it returns
    expanding: bool  # an expanding IN: SQLAlchemy renders the SQL at each execution
    # Each returned column's result processor (by position), where its type has one: known
    # at the first execution, as a processor may depend on the driver's column type.
    converters: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None

    def converted(self, dialect: Dialect, cursor: Any, rows: list[Any]) -> list[Any]:
        """The driver's rows with their values converted as SQLAlchemy's result would."""
        if self.converters is None:
            # psycopg makes the description anew at each access: read once, here.
            codes = (column.type_code for column in cursor.description)
            self.converters = tuple(
                (index, convert)
                for index, (type_, code) in enumerate(zip(self.returned, codes, strict=True))
                if (convert := type_._cached_result_processor(dialect, code))
            )
        if not self.converters:
            return rows
        converted = []
        for row in rows:
            values = list(row)
            for index, process in self.converters:
                values[index] = process(values[index])
            converted.append(tuple(values))
        return converted


@dataclass
class _Held:
    """A connection kept between transactions, with the session its last one left."""

    connection: Connection
    session: Session | None = None

    def discard(self, *, broken: bool) -> None:
        """Give the connection back to its pool, or (`broken`) drop it."""
        if self.session is not None:
            self.session.close()
        if broken:
            self.connection.invalidate()
        self.connection.close()  # not reconnected in place: that would lose the engine's autocommit


class _HeldConnections:
    """Connections kept between transactions, each with its session, per engine (transactions,
    autocommit claims): taking a connection from the pool and giving it back, with their
    events, and a new session and its closing, cost about half of a short transaction's CPU
    (a worker's step; ≈ 5 % of a submit's).

    A thread (a request's greenlet, under gevent) takes one for a transaction and gives it
    back after; a transaction it opens inside another on the same engine joins that one's
    connection and transaction, as a session bound to a connection in a transaction does. At
    most `keep` wait per engine; more are given back to the pool. A connection the server
    ended is found before it is used again, as the pool finds it at checkout
    (`_server_hung_up`), and one that failed mid-transaction was invalidated by SQLAlchemy:
    either is dropped, and another taken."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._idle: dict[Engine, list[_Held]] = {}
        self._taken = threading.local()  # this thread's: {engine: _Held}

    def _taken_here(self) -> dict[Engine, _Held]:
        taken: dict[Engine, _Held] | None = getattr(self._taken, "held", None)
        if taken is None:
            taken = self._taken.held = {}
        return taken

    def session(self, engine: Engine) -> Session:
        taken = self._taken_here()
        held = taken.get(engine)
        if held is not None:  # inside a transaction of this thread's: join it
            return Session(held.connection, expire_on_commit=False)
        held = taken[engine] = self._take(engine)
        held.session = held.session or Session(held.connection, expire_on_commit=False)
        return held.session

    @contextmanager
    def connection(self, engine: Engine) -> Iterator[Connection]:
        """The thread's connection for a block without a session (one statement in
        autocommit), given back after it; inside another block on the same engine, that
        one's."""
        taken = self._taken_here()
        if engine in taken:
            yield taken[engine].connection
            return
        held = taken[engine] = self._take(engine)
        connection = held.connection
        try:
            yield connection
            if connection.in_transaction():  # SQLAlchemy's own, begun by an execute
                connection.commit()
        except BaseException:
            if connection.in_transaction():
                connection.rollback()
            raise
        finally:  # even if the rollback failed (then it is not kept)
            del taken[engine]
            self._keep_or_discard(engine, held)

    def _take(self, engine: Engine) -> _Held:
        while True:
            with self._lock:
                idle = self._idle.get(engine)
                held = idle.pop() if idle else None
            if held is None:
                return _Held(engine.connect())
            connection = held.connection
            if not connection.invalidated and not _server_hung_up(
                connection.connection.dbapi_connection
            ):
                return held
            held.discard(broken=True)

    def give_back(self, engine: Engine, session: Session, *, failed: bool = False) -> None:
        """End the thread's use of the session's connection: kept for the next transaction,
        its session emptied of what it loaded (a later read must not be answered from it),
        or closed after a failure (the next transaction gets a new one). A session that
        joined another's transaction is closed."""
        taken = self._taken_here()
        held = taken.get(engine)
        if held is None or session is not held.session:
            session.close()
            return
        del taken[engine]
        if failed:
            session.close()
            held.session = None
        elif session.identity_map:
            session.expunge_all()
        self._keep_or_discard(engine, held)

    def _keep_or_discard(self, engine: Engine, held: _Held) -> None:
        # A connection whose transaction did not end (its rollback failed) is not kept.
        broken = held.connection.invalidated or held.connection.in_transaction()
        with self._lock:
            idle = self._idle.setdefault(engine, [])
            if len(idle) < self._keep and not broken:
                idle.append(held)
                return
        held.discard(broken=broken)

    def close(self) -> None:
        """Give the waiting connections back to their pools."""
        with self._lock:
            idle = [held for kept in self._idle.values() for held in kept]
            self._idle.clear()
        for held in idle:
            held.discard(broken=False)


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` once the session's current transaction has committed."""
    session.info.setdefault(_CALLBACKS, []).append(callback)


class Database:
    def __init__(self, database_url: str) -> None:
        # Every slice's table on the metadata, whichever models the process imported: a
        # foreign key (a job's batch, an entry's batch) resolves at the first flush.
        import shared.tables  # noqa: F401  (imports every slice's models; they import this)

        # Mappings checked now, not at the first query (and a `Job` made from a row before
        # any query, `jobs.service._job_of`, has its attributes).
        configure_mappers()
        self.url = database_url
        self.engine = make_engine(database_url)
        # SQLite has one writer, and every transaction here takes the write lock at BEGIN:
        # a process runs its transactions one at a time, each waiting its turn on a lock that
        # is gevent's under gevent (created after the worker patched `threading`). Without
        # it a request that yields inside its transaction (a name lookup) lets another begin
        # one, whose wait for the write lock (SQLite's busy handler, in C) blocks the whole
        # process: the first never commits, and both wait out the 30 s busy timeout.
        self._turn: AbstractContextManager[Any] = (
            nullcontext() if self.is_postgres else threading.RLock()
        )
        # One statement is a transaction of its own: on PostgreSQL it needs no BEGIN and
        # COMMIT, two of a claim's three round trips (SQLite has no round trips to save).
        self._autocommit = self.engine
        if self.is_postgres:
            self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        # On PostgreSQL, connections and their sessions are kept between transactions.
        self._held = _HeldConnections(POOL_SIZE) if self.is_postgres else None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits at the end of the block, or rolls back on error."""
        engine, held = self.engine, self._held
        with self._turn:
            session = (
                Session(engine, expire_on_commit=False) if held is None else held.session(engine)
            )
            try:
                yield session
                session.commit()
            except BaseException:
                try:
                    session.rollback()
                finally:  # even if the rollback failed: the connection is not left taken
                    session.info.pop(_CALLBACKS, None)
                    if held is None:
                        session.close()
                    else:
                        held.give_back(engine, session, failed=True)
                raise
            callbacks = session.info.pop(_CALLBACKS, [])
            if held is None:
                session.close()
            else:
                held.give_back(engine, session)
        for callback in callbacks:
            callback()

    @contextmanager
    def statement(self) -> Iterator[Connection]:
        """A connection for one statement that is atomic on its own (a claim's conditional
        update): on PostgreSQL in autocommit, with no BEGIN and COMMIT (two of a claim's
        three round trips) and no ORM session around it, the connection kept between
        blocks; on SQLite a transaction of its own, which takes the write lock."""
        with self._turn:
            if self._held is None:
                with self.engine.begin() as connection:
                    yield connection
                return
            with self._held.connection(self._autocommit) as connection:
                yield connection

    def ping(self) -> None:
        with self._turn, self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if self._held is not None:
            self._held.close()
        self.engine.dispose()
