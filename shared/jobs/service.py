"""The job's life in the database: creation with its credit hold, and every transition.

Each transition is one conditional `UPDATE … WHERE id = :id AND status IN (:expected)
RETURNING *`, so a task delivered twice, or two workers racing, move a job at most once;
whoever loses the race gets `None` and stops. What a transition may do is decided by
`shared.jobs.machine`; this module only applies it. Functions flush, never commit.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from shared import accounts, metrics, pagination
from shared.budgets import service as budgets
from shared.catalog import Catalog, VideoModel, normalize_input, pricing, quotes
from shared.catalog.sync import provider_cost_usd
from shared.config import Settings
from shared.db import Prepared, UTCDateTime, after_commit, utcnow
from shared.errors import IdempotencyConflict, InvalidInput, NotCancellable
from shared.jobs import admission, events, machine
from shared.jobs.machine import Failure
from shared.jobs.models import EarlyCallback, IdempotencyKey, Job
from shared.jobs.pacing import estimated_seconds, measured_render_seconds, recent_renders
from shared.jobs.schemas import JobCreate
from shared.jobs.status import ACTIVE_AT_PROVIDER, CANCELLABLE, JobStatus, PublicStatus
from shared.ledger import service as ledger
from shared.media.url_policy import UnsafeUrl, check_fetchable
from shared.providers.base import CallbackOutcome, ProviderError, ProviderResult, ProviderStatus
from shared.webhooks import service as webhooks

MAX_LOG_LINES = 50
log = logging.getLogger(__name__)


def new_poll_token() -> str:
    return secrets.token_hex(8)


def _due_in(wait: timedelta | float) -> ColumnElement[datetime]:
    """When a step `wait` from now is due, but never after the job's deadline (where the
    dispatcher fails it): the value of `due_at` for a job not yet delivered."""
    wait = wait if isinstance(wait, timedelta) else timedelta(seconds=wait)
    return _not_past_deadline(literal(utcnow() + wait, UTCDateTime()))


def _not_past_deadline(at: ColumnElement[datetime]) -> ColumnElement[datetime]:
    return case((Job.deadline_at < at, Job.deadline_at), else_=at)


_JOBS = Job.__table__
# The `Job` attribute of each column, in the table's order (what a transition returns).
_JOB_ATTRIBUTES = tuple(Job.__mapper__.get_property_by_column(c).key for c in _JOBS.c)
_JOB_COLUMNS = tuple(column.name for column in _JOBS.c)
_NEW_JOB = Job.__mapper__.class_manager.new_instance


def _job_of(row: Sequence[Any]) -> Job:
    """The job as a row a transition returned shows it (a `Job` outside any session). Its
    values go straight into the instance's dict, as the ORM's own loading puts them: ≈ 2 µs
    against ≈ 35 µs for `Job(**values)`, which sets each attribute through its events."""
    job = _NEW_JOB()
    vars(job).update(zip(_JOB_ATTRIBUTES, row, strict=True))
    return job


def _status_in(expected: Sequence[JobStatus]) -> ColumnElement[bool]:
    """`status IN (…)` spelt as equalities: SQLAlchemy expands an IN list at execution,
    which a statement compiled once (`Prepared`) and executemany cannot take."""
    return or_(*(Job.status == status for status in expected))


class _Transition:
    """A transition's conditional update, compiled once and run on the driver's connection
    (`Prepared`): `_move` without building the statement, or the ORM's unit of work and
    result objects, on every call (each cost more CPU than PostgreSQL took to run the
    update). Parameters: `job_id`, `now` (bound at the call) and the statement's own.
    Emits its events as `_move` does. With a `key` of its own (several jobs), it is a
    claim: `all` runs it. The jobs it returns are not in the session."""

    def __init__(
        self,
        expected: Sequence[JobStatus],
        *conditions: Any,
        key: ColumnElement[bool] | None = None,
        **values: Any,
    ) -> None:
        self.target: JobStatus | None = values.get("status")
        if self.target is not None:
            machine.check_transition(tuple(expected), self.target)
        self.events = events.count(expected, values)
        if self.events:
            values["event_seq"] = Job.event_seq + self.events
        key = Job.id == bindparam("job_id") if key is None else key
        self.statement = Prepared(
            update(Job)
            .where(key, _status_in(expected), *conditions)
            .values(updated_at=_NOW, **values)
            .returning(*_JOBS.c)
        )

    def __call__(self, session: Session, job_id: uuid.UUID, **params: Any) -> Job | None:
        job = self._job(session.connection(), job_id, params)
        if job is None:
            return None
        if self.events:
            events.emit(session, job)
        if self.target is not None:
            _log_moved(job, self.target)
        return job

    def claim(self, connection: Connection, job_id: uuid.UUID, **params: Any) -> Job | None:
        """The job as it is after the update, if it matched: a claim, which writes nothing a
        customer sees (no events, no log line), on a connection of its own."""
        assert not self.events and self.target is None
        return self._job(connection, job_id, params)

    def all(self, connection: Connection, **params: Any) -> list[Job]:
        """Every job the key selects, as it is after the update (a claim, as `claim`)."""
        assert not self.events and self.target is None
        rows = self.statement.rows(connection, {"now": utcnow(), **params})
        return [_job_of(row) for row in rows]

    def _job(self, connection: Connection, job_id: uuid.UUID, params: dict[str, Any]) -> Job | None:
        rows = self.statement.rows(connection, {"job_id": job_id, "now": utcnow(), **params})
        return _job_of(rows[0]) if rows else None


def _log_moved(job: Job, target: JobStatus) -> None:
    ids = {"job_id": str(job.id), "account_id": str(job.account_id)}
    log.info("job is now %s", target, extra=ids)


_NOW = bindparam("now", type_=UTCDateTime())
_DUE = bindparam("due", type_=UTCDateTime())  # capped at the deadline
_CLAIM_SUBMIT = _Transition(
    [JobStatus.QUEUED],
    Job.submit_attempted_at.is_(None),
    or_(Job.capacity_limited.is_(False), Job.admitted_at.is_not(None)),  # not waiting
    submit_attempted_at=_NOW,
    due_at=_not_past_deadline(_DUE),
)
_SUBMITTED = _Transition(
    [JobStatus.QUEUED],
    status=JobStatus.SUBMITTED,
    provider_request_id=bindparam("request_id"),
    started_at=_NOW,
    poll_token=bindparam("poll_token"),
    estimated_seconds=bindparam("estimated_seconds"),
    due_at=_not_past_deadline(_DUE),
)
_POLL_CLAIMED: dict[str, Any] = {
    "poll_token": bindparam("new_token"),
    "poll_count": Job.poll_count + 1,
    "due_at": _not_past_deadline(_DUE),
}
_CLAIM_POLL = _Transition(ACTIVE_AT_PROVIDER, Job.poll_token == bindparam("token"), **_POLL_CLAIMED)
# A batch's: its IN list is rendered by SQLAlchemy for each batch's length.
_CLAIM_POLLS = _Transition(
    ACTIVE_AT_PROVIDER,
    Job.poll_token == bindparam("token"),
    key=Job.id.in_(bindparam("job_ids", expanding=True)),
    **_POLL_CLAIMED,
)
_UNITS = bindparam("provider_units", type_=Float())  # what the provider says it bills
_DELIVERED = _Transition(
    ACTIVE_AT_PROVIDER,
    status=JobStatus.SETTLING,
    progress=100,
    queue_position=None,
    provider_result=bindparam("provider_result"),
    provider_completed_at=_NOW,
    provider_units=_UNITS,
    provider_cost_usd=provider_cost_usd(_UNITS, Job.model),  # priced in the same statement
    due_at=_NOW,  # settlement is sent after the commit; resent if lost
)
_SETTLE = _Transition(
    [JobStatus.SETTLING],
    status=JobStatus.INGESTING,
    credits_used=Job.estimated_credits,
    due_at=_NOW,  # settlement sends ingestion after its commit; resent if lost
)
_CLAIM_INGEST = _Transition(
    [JobStatus.INGESTING],
    or_(
        Job.ingest_started_at.is_(None),
        Job.ingest_started_at <= bindparam("lease_ended", type_=UTCDateTime()),
    ),
    ingest_started_at=_NOW,
    due_at=_DUE,  # the lease's end: a delivered job has no deadline to keep
)
_COMPLETE = _Transition(
    [JobStatus.INGESTING],
    status=JobStatus.COMPLETED,
    result=bindparam("result"),
    completed_at=_NOW,
    due_at=None,
)
# A poll's report, written only while the poll loop that claimed the job still owns it
# (`claimed`: the token its claim wrote; a webhook's "poll now" or the dispatcher may
# have replaced the loop since). One that moves the progress or the queue position writes
# them and its event; one that changes neither only re-arms the poll (on the connection:
# no RETURNING, no ORM, no event; a batch's reports in one executemany).
_PROGRESS = _Transition(
    ACTIVE_AT_PROVIDER,
    Job.poll_token == bindparam("claimed"),
    queue_position=bindparam("queue_position"),
    progress=bindparam("progress"),
    poll_token=bindparam("poll_token"),
    due_at=_not_past_deadline(_DUE),
)
_REPORT = (
    update(Job)
    .where(
        Job.id == bindparam("job_id"),
        _status_in(ACTIVE_AT_PROVIDER),
        Job.poll_token == bindparam("claimed"),
    )
    .values(
        poll_token=bindparam("poll_token"),
        updated_at=_NOW,
        due_at=_not_past_deadline(_DUE),
    )
)


# ---- creation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier job
    webhook_secret: str | None = None  # signs the job's own webhook, if it has one


def _request_hash(request: JobCreate) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# The submit's statements, compiled once and run on the driver's connection (no unit of
# work, no execution context): a submit is the API's hottest path.
_IDEMPOTENCY_KEYS = IdempotencyKey.__table__
_EARLIER_JOB = Prepared(
    select(_IDEMPOTENCY_KEYS.c.request_hash, _IDEMPOTENCY_KEYS.c.job_id).where(
        _IDEMPOTENCY_KEYS.c.account_id == bindparam("account_id"),
        _IDEMPOTENCY_KEYS.c.key == bindparam("key"),
    )
)


@functools.cache
def _insert_job(keys: tuple[str, ...]) -> Prepared:
    """The INSERT of a new job's row with `keys` (`job_row`'s), the values named: it can go
    in another statement (`Prepared.carrying`), as a keyed `insert(Job)` cannot."""
    return Prepared(insert(Job).values({key: bindparam(key) for key in keys}))


_INSERT_KEY = Prepared(insert(IdempotencyKey))


@dataclass(frozen=True)
class Priced:
    """A request checked against its model and priced: what a job row is made from."""

    model: VideoModel
    input: dict[str, Any]
    units: int  # the estimate held, hundredths of a credit
    quote_id: uuid.UUID | None = None


def price_request(*, settings: Settings, catalog: Catalog, request: JobCreate) -> Priced:
    """Check the input against the model's own schema (and its image URL against the URL
    policy) and price it at the catalog's price; no database."""
    model = catalog.get(request.model)
    normalized = normalize_input(model, request.input)
    if "image_url" in normalized:
        try:
            check_fetchable(
                normalized["image_url"], allow_private=settings.allow_private_image_urls
            )
        except UnsafeUrl as exc:
            raise InvalidInput(
                f"input.image_url {exc}.", fields={"input.image_url": str(exc)}
            ) from None
    if request.webhook_url is not None:
        webhooks.check_url(
            request.webhook_url,
            allow_private=settings.webhook_allow_private_urls,
            field="webhook_url",
        )
    price = pricing.quote(model, model.output_seconds(normalized), settings)
    return Priced(model, normalized, price.units)


def resolves_hosts(model_input: Mapping[str, Any], webhook_url: str | None = None) -> bool:
    """Whether pricing a request looks host names up (its image's, its webhook's): the
    caller then keeps no transaction open across it (a slow resolver would hold a pooled
    connection, or SQLite's write lock, for as long as it takes)."""
    return "image_url" in model_input or webhook_url is not None


def _bind_quote(
    session: Session, account_id: uuid.UUID, request: JobCreate, priced: Priced
) -> Priced:
    """The request at its quote's price, if it names a binding quote that still holds."""
    if request.quote_id is None:
        return priced
    quote = quotes.honour(
        session=session,
        account_id=account_id,
        quote_id=request.quote_id,
        model=priced.model.id,
        normalized=priced.input,
    )
    return replace(priced, units=quote.amount, quote_id=quote.id)


def job_row(
    *,
    settings: Settings,
    priced: Priced,
    provider_name: str,
    account_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    account: ledger.LockedAccount,
    metadata: dict[str, Any],
    now: datetime,
    estimated_seconds: int,
    batch_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """A new job's row (keys are its columns). A job no capacity limits is admitted at
    once and its submit is due now; one that counts against a capacity waits, with no due
    time, for the fair scheduler (`admission.admit`) to give it a slot."""
    model = priced.model
    deadline = settings.job_deadline_seconds or model.deadline_seconds
    capacity_limited = admission.limited(settings, model.id, account.concurrency_cap)
    return {
        "id": uuid.uuid4(),
        "account_id": account_id,
        "api_key_id": api_key_id,
        "batch_id": batch_id,
        "quote_id": priced.quote_id,
        "type": "video_generation",
        "model": model.id,
        "input": priced.input,
        "metadata": metadata,
        "status": JobStatus.QUEUED,
        "progress": 0,
        "provider_logs": [],
        "provider": provider_name,
        "poll_count": 0,
        "estimated_seconds": estimated_seconds,
        "estimated_credits": priced.units,
        "created_at": now,
        "updated_at": now,
        "deadline_at": now + timedelta(seconds=deadline),
        "capacity_limited": capacity_limited,
        "admitted_at": None if capacity_limited else now,
        # the submit message is sent after the commit; resent if lost
        "due_at": None if capacity_limited else now,
        "event_seq": len(events.types_for(JobStatus.QUEUED)),  # job.queued, emitted below
    }


def insert_job(session: Session, row: dict[str, Any]) -> Job:
    """Write a new job's row and its `job.queued` event; the answer's view of the row (not
    in the session)."""
    job, writes = _new_job(row, utcnow())
    connection = session.connection()
    for statement, values in writes:
        statement.rows(connection, values)
    return job


def _new_job(
    row: dict[str, Any], at: datetime
) -> tuple[Job, tuple[tuple[Prepared, dict[str, Any]], ...]]:
    """The view of a job about to be written from `row` (`job_row`'s; the rest are NULL),
    and what writes it: its row, then its `job.queued` event made at `at`."""
    job = _job_of(tuple(map(row.get, _JOB_COLUMNS)))
    return job, ((_insert_job(tuple(row)), row), events.insert_for(job, at))


def create_job(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    provider_name: str,
    account_id: uuid.UUID,
    request: JobCreate,
    idempotency_key: str | None,
    api_key_id: uuid.UUID | None = None,
) -> Submission:
    """Quote, hold the estimate and write the job, all in the caller's transaction.

    `request` has its shape checked already; the model's own input schema is checked here.
    A binding quote (`request.quote_id`) sets the estimate; the account's and the key's
    budgets are checked, and the hold placed, under the account's lock.
    """
    priced = price_request(settings=settings, catalog=catalog, request=request)
    seconds = expected_seconds(session=session, model=priced.model)

    # Lock the account before looking at idempotency keys and credits: concurrent submits
    # of one account run this section one at a time, so neither a key nor a credit races.
    account = ledger.lock_account(session=session, account_id=account_id)
    connection = session.connection()
    if idempotency_key is not None:
        request_hash = _request_hash(request)
        earlier = _EARLIER_JOB.rows(connection, {"account_id": account_id, "key": idempotency_key})
        if earlier:
            earlier_hash, earlier_job = earlier[0]
            if earlier_hash != request_hash:
                raise IdempotencyConflict(
                    "This Idempotency-Key was used with a different request body.",
                    job_id=str(earlier_job),
                )
            secret = None
            if request.webhook_url is not None:
                secret = webhooks.secret_for_job(session=session, job_id=earlier_job)
            return Submission(
                session.get_one(Job, earlier_job), created=False, webhook_secret=secret
            )

    priced = _bind_quote(session, account_id, request, priced)
    if account.has_budgets:
        budgets.check(
            session=session, account_id=account_id, key_id=api_key_id, amount=priced.units
        )
    now = utcnow()
    row = job_row(
        settings=settings,
        priced=priced,
        provider_name=provider_name,
        account_id=account_id,
        api_key_id=api_key_id,
        account=account,
        metadata=request.metadata,
        now=now,
        estimated_seconds=seconds,
    )
    job, writes = _new_job(row, now)
    ledger.place_hold(  # with the job and its `job.queued` event: one statement
        session=session,
        account_id=account_id,
        job_id=job.id,
        amount=priced.units,
        written_with=writes,
    )
    secret = None
    if request.webhook_url is not None:
        secret = webhooks.create_for_job(
            session=session,
            account_id=account_id,
            job_id=job.id,
            url=request.webhook_url,
            events=request.webhook_events,
        ).secret
    if idempotency_key is not None:
        _INSERT_KEY.rows(
            connection,
            {
                "account_id": account_id,
                "key": idempotency_key,
                "request_hash": request_hash,
                "job_id": job.id,
                "created_at": now,
            },
        )
    return Submission(job, created=True, webhook_secret=secret)


# ---- reading -------------------------------------------------------------------------


def get_job(*, session: Session, account_id: uuid.UUID, job_id: str) -> Job:
    return accounts.get_owned(
        session=session, model=Job, account_id=account_id, raw_id=job_id, noun="job"
    )


def list_jobs(
    *,
    session: Session,
    account_id: uuid.UUID,
    status: PublicStatus | None,
    job_type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """The account's jobs, newest first, and the cursor of the next page (or None)."""
    query = select(Job).where(Job.account_id == account_id)
    if status is not None:
        query = query.where(Job.status.in_(status.internal))
    if job_type is not None:
        query = query.where(Job.type == job_type)
    return pagination.newest_first(
        query,
        session=session,
        created_at=Job.created_at,
        row_id=Job.id,
        limit=limit,
        cursor=cursor,
    )


# ---- transitions ---------------------------------------------------------------------


def _move(
    session: Session,
    job_id: uuid.UUID,
    expected: Sequence[JobStatus],
    *conditions: Any,
    **values: Any,
) -> Job | None:
    """The one conditional update every transition goes through: the job as it is after
    the update, or None if it was not in an expected state (someone else moved it). A
    move a customer can see writes its events in the same transaction (`events.count`)."""
    target = values.get("status")
    if target is not None:
        machine.check_transition(tuple(expected), target)
    seen = events.count(expected, values)
    if seen:
        values["event_seq"] = Job.event_seq + seen
    job = session.scalars(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(expected), *conditions)
        .values(updated_at=utcnow(), **values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()
    if job is not None and seen:
        events.emit(session, job)
    if job is not None and target is not None:
        _log_moved(job, target)
    return job


def claim_submit(*, connection: Connection, job_id: uuid.UUID) -> Job | None:
    """Record the submit attempt before calling the provider; None if someone else has."""
    return _CLAIM_SUBMIT.claim(connection, job_id, due=utcnow() + machine.SUBMIT_BUDGET)


def forget_submit_attempt(*, session: Session, job_id: uuid.UUID, retry_in: float) -> None:
    """The provider surely did not take the request (it answered with an error): allow a
    retry, due in `retry_in` seconds."""
    _move(session, job_id, [JobStatus.QUEUED], submit_attempted_at=None, due_at=_due_in(retry_in))


def record_submitted(
    *,
    session: Session,
    job_id: uuid.UUID,
    request_id: str,
    poll_token: str | None,
    poll_in: float,
    expected_seconds: int,
) -> Job | None:
    """The provider took the request; its render should take `expected_seconds` (shown as
    the job's `estimated_seconds` from now on) and its first poll is due in `poll_in`
    seconds, sent with `poll_token` (None: parked until the dispatcher sends it). None
    if the job was cancelled while the provider call was in flight."""
    job = _SUBMITTED(
        session,
        job_id,
        request_id=request_id,
        poll_token=poll_token,
        estimated_seconds=expected_seconds,
        due=utcnow() + timedelta(seconds=poll_in),
    )
    if job is not None and job.started_at is not None:
        waited, model = (job.started_at - job.created_at).total_seconds(), job.model
        after_commit(session, lambda: metrics.child(metrics.QUEUE_WAIT, model).observe(waited))
    return job


def claim_polls(
    *, connection: Connection, job_ids: Sequence[uuid.UUID], token: str, new_token: str
) -> list[Job]:
    """Take the poll loop's turn for each of the jobs still at the provider whose token is
    `token` (one statement): each gets `new_token`, one more poll counted, and is due again
    `POLL_BUDGET` from now, in case this poll stops half way. A stale or duplicate message
    holds an old token and claims nothing; two deliveries of one batch never claim the
    same job."""
    due = utcnow() + machine.POLL_BUDGET
    if len(job_ids) == 1:  # a single poll: the statement compiled once
        claimed = _CLAIM_POLL.claim(
            connection, job_ids[0], token=token, new_token=new_token, due=due
        )
        return [] if claimed is None else [claimed]
    return _CLAIM_POLLS.all(
        connection, job_ids=list(job_ids), token=token, new_token=new_token, due=due
    )


def poll_now(*, session: Session, job_id: uuid.UUID, token: str) -> Job | None:
    """Replace the job's poll loop with one that polls at once (`token` is its fence: the
    old loop's next message exits). None if the job is no longer at the provider."""
    return _move(
        session,
        job_id,
        ACTIVE_AT_PROVIDER,
        poll_token=token,
        due_at=_due_in(machine.POLL_BUDGET),
    )


def record_result_unfetched(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """The provider reported the request complete but its result could not be fetched:
    keep when that first happened. None if the job has moved on."""
    first = literal(utcnow(), UTCDateTime())
    return _move(
        session,
        job_id,
        ACTIVE_AT_PROVIDER,
        result_unfetched_since=func.coalesce(Job.result_unfetched_since, first),
    )


@dataclass(frozen=True)
class PollReport:
    """What one poll learnt of a job it claimed: the provider's status (None: no answer, or
    none to record) and when the job is polled next, `poll_in` seconds from now, by a
    message carrying `poll_token` (None: parked until the dispatcher sends it)."""

    job: Job  # as the claim left it: its `poll_token` is the claim's
    status: ProviderStatus | None
    poll_in: float
    poll_token: str | None


def record_reports(*, session: Session, reports: Sequence[PollReport]) -> int:
    """Store what the provider said of each polled job and when its next poll is due;
    returns how many reports were written. A report applies while the job is still at the
    provider and its poll loop is still the one that claimed it (its token); otherwise it
    is dropped (the job moved on, or another loop owns it now).

    Most reports change nothing a customer sees: those are one statement for them all
    (executemany of one prebuilt UPDATE, no RETURNING). A report that moves the progress,
    the queue position, the logs or the status is written on its own, with its event."""
    now = utcnow()
    plain: list[dict[str, Any]] = []
    written = 0
    for report in reports:
        seen = None if report.status is None else _write_seen(session, report, now)
        if seen is not None:
            written += seen
            continue
        plain.append(
            {
                "job_id": report.job.id,
                "claimed": report.job.poll_token,
                "poll_token": report.poll_token,
                "now": now,
                "due": now + timedelta(seconds=report.poll_in),
            }
        )
    if plain:
        written += session.connection().execute(_REPORT, plain).rowcount
    return written


def _write_seen(session: Session, report: PollReport, now: datetime) -> bool | None:
    """Write a report that changes what a customer sees, with its event: whether it was
    written (the fence may drop it). None if it changes nothing seen: the caller writes it
    with the plain ones."""
    job, status = report.job, report.status
    assert status is not None
    progress = job.progress if status.progress is None else max(job.progress, status.progress)
    reported: dict[str, Any] = {"progress": progress, "queue_position": status.queue_position}
    if status.logs:
        reported["provider_logs"] = status.logs[-MAX_LOG_LINES:]
    changed = {name: value for name, value in reported.items() if value != getattr(job, name)}
    moved_to = machine.status_for_report(status.state)
    moves = moved_to is not None and moved_to != job.status
    if not changed and not moves:
        return None
    fence = {"claimed": job.poll_token, "poll_token": report.poll_token}
    if not moves and "provider_logs" not in changed:
        due = now + timedelta(seconds=report.poll_in)
        progressed = _PROGRESS(
            session,
            job.id,
            progress=progress,
            queue_position=status.queue_position,
            due=due,
            **fence,
        )
        return progressed is not None
    values: dict[str, Any] = {"due_at": _due_in(report.poll_in), **changed}
    expected: Sequence[JobStatus] = ACTIVE_AT_PROVIDER
    if moves:
        values["status"], expected = moved_to, [job.status]
    moved = _move(
        session,
        job.id,
        expected,
        Job.poll_token == job.poll_token,
        poll_token=report.poll_token,
        **values,
    )
    return moved is not None


def record_delivered(*, session: Session, job_id: uuid.UUID, result: ProviderResult) -> bool:
    """The provider finished: keep its result, and the units it bills with their cost
    (None when it reported none), and move on to settlement."""
    delivered = _DELIVERED(
        session, job_id, provider_result=result.to_dict(), provider_units=result.billable_units
    )
    return delivered is not None


def _end_unpaid(
    session: Session,
    job_id: uuid.UUID,
    expected: Sequence[JobStatus],
    status: JobStatus,
    **values: Any,
) -> Job | None:
    """End the job without a charge: failed or cancelled, hold released, in one step."""
    job = _move(
        session,
        job_id,
        expected,
        status=status,
        completed_at=utcnow(),
        queue_position=None,
        due_at=None,
        **values,
    )
    if job is not None:
        ledger.release(
            session=session, account_id=job.account_id, job_id=job_id, held=job.estimated_credits
        )
        after_commit(session, lambda: metrics.observe_finished(job))
    return job


def fail(
    *,
    session: Session,
    job_id: uuid.UUID,
    failure: Failure,
    expected: Sequence[JobStatus] = CANCELLABLE,
) -> Job | None:
    """Fail the job and release its hold; None if it had already moved on."""
    return _end_unpaid(session, job_id, expected, JobStatus.FAILED, error=failure.to_dict())


def fail_on_error(*, session: Session, job_id: uuid.UUID, kind: str) -> Job | None:
    """A step raised an unexpected error (`kind`): the job ends now, never at its deadline.
    Before the charge its hold is released (the job is returned, so the caller can stop
    it at the provider); once charged (ingesting) the charge is refunded."""
    failure = machine.internal_error(kind)
    unpaid = (*CANCELLABLE, JobStatus.SETTLING)
    failed = _end_unpaid(session, job_id, unpaid, JobStatus.FAILED, error=failure.to_dict())
    if failed is None:
        fail_ingest(session=session, job_id=job_id, reason=f"an unexpected error ({kind})")
    return failed


def cancel_queued(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """Cancel a job not yet at the provider, releasing its hold; None if it is not queued."""
    return _end_unpaid(session, job_id, [JobStatus.QUEUED], JobStatus.CANCELLED)


def cancel(*, session: Session, account_id: uuid.UUID, job_id: str) -> tuple[Job, bool]:
    """Cancel a job; returns the job and whether the provider must be asked to stop it.

    A queued job is cancelled at once and its hold released. A job at the provider gets
    a cancel request: the provider may still finish it ("may still complete"), so the
    job ends on what really happens there — cancelled and released, or delivered and
    charged. Cancelling twice answers the same; a delivered job cannot be cancelled.
    """
    job = get_job(session=session, account_id=account_id, job_id=job_id)
    cancelled = cancel_queued(session=session, job_id=job.id)
    if cancelled is not None:
        return cancelled, False
    requested = _move(
        session,
        job.id,
        ACTIVE_AT_PROVIDER,
        Job.cancel_requested_at.is_(None),
        cancel_requested_at=utcnow(),
    )
    if requested is not None:
        return requested, True
    session.refresh(job)
    if job.status is JobStatus.CANCELLED or job.cancel_requested_at is not None:
        return job, False
    raise NotCancellable(
        f"Job {job.id} is {job.status.public} and can no longer be cancelled.",
        status=job.status.public.value,
    )


def record_provider_failure(*, session: Session, job: Job, code: str, message: str | None) -> str:
    """A request that ended without a video: cancelled if we asked for that, else failed.

    Returns the outcome: "cancelled", "failed", or "ignored" if the job had moved on."""
    ending = machine.ending_at_provider(job, code)
    error = None
    if ending is JobStatus.FAILED:
        error = Failure(code, message or "the provider failed the request").to_dict()
    ended = _end_unpaid(session, job.id, ACTIVE_AT_PROVIDER, ending, error=error)
    return ending.value if ended is not None else "ignored"


def apply_provider_callback(
    *, session: Session, request_id: str, outcome: CallbackOutcome
) -> tuple[str, Job | None]:
    """Move a job on from a provider's verified completion callback: its video, its failure,
    or None for a callback without a usable video (the job is then polled now: the
    provider's queue API has the result).

    Callbacks come at least once and in any order: whatever the job's state no longer
    allows (a second delivery, an error after the result) is ignored, not an error. One
    that comes before the worker recorded the request id is kept (`EarlyCallback`) and
    applied once the id is known. Returns the outcome ("delivered", "failed",
    "cancelled", "polling": send the job's poll now with its `poll_token`, "kept",
    "ignored") and the job.
    """
    job = session.scalar(select(Job).where(Job.provider_request_id == request_id))
    if job is None:
        _keep_early_callback(session, request_id, outcome)
        return "kept", None
    return _apply_callback(session, job, outcome), job


def apply_early_callback(*, session: Session, request_id: str) -> tuple[str, Job | None]:
    """Apply the callback kept for `request_id` now that its job may be known. Whoever takes
    the row applies it, so it applies once; "none" if there is none, "kept" (left in
    place) while no job has the id yet."""
    job = session.scalar(select(Job).where(Job.provider_request_id == request_id))
    if job is None:
        return "kept", None
    kept = session.execute(
        delete(EarlyCallback)
        .where(EarlyCallback.request_id == request_id)
        .returning(EarlyCallback.result, EarlyCallback.error)
    ).first()
    if kept is None:
        return "none", job
    outcome: CallbackOutcome = None
    if kept.result is not None:
        video = kept.result["video"]
        outcome = ProviderResult(video["url"], video["content_type"], video["file_size"])
    elif kept.error is not None:
        outcome = ProviderError(kept.error["message"], code=kept.error["code"])
    return _apply_callback(session, job, outcome), job


def _keep_early_callback(session: Session, request_id: str, outcome: CallbackOutcome) -> None:
    """Keep a callback for a request id no job has yet; drop those kept too long (their job
    never recorded the id, e.g. a submit whose outcome was unknown)."""
    now = utcnow()
    session.execute(
        delete(EarlyCallback).where(EarlyCallback.received_at < now - machine.EARLY_CALLBACK_TTL)
    )
    row: dict[str, Any] = {"request_id": request_id, "received_at": now}
    if isinstance(outcome, ProviderResult):
        row["result"] = outcome.to_dict()
    elif isinstance(outcome, ProviderError):
        row["error"] = {"code": outcome.code, "message": str(outcome)}
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    session.execute(
        dialect.insert(EarlyCallback)
        .values(**row)
        .on_conflict_do_nothing(index_elements=[EarlyCallback.request_id])
    )


def _apply_callback(session: Session, job: Job, outcome: CallbackOutcome) -> str:
    if job.status not in ACTIVE_AT_PROVIDER:
        return "ignored"
    if isinstance(outcome, ProviderResult):
        delivered = record_delivered(session=session, job_id=job.id, result=outcome)
        return "delivered" if delivered else "ignored"
    if isinstance(outcome, ProviderError):
        return record_provider_failure(
            session=session, job=job, code=outcome.code, message=str(outcome)
        )
    polled = poll_now(session=session, job_id=job.id, token=new_poll_token())
    return "polling" if polled is not None else "ignored"


def settle(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """Capture the job's cost exactly once and release the rest of its hold.

    The cost is the estimate: prices are per requested second (or per video), which is
    what the provider bills. The hold is the estimate too, so the charge is known before
    the update and goes in with it.
    """
    job = _SETTLE(session, job_id)
    if job is not None:
        ledger.capture(
            session=session,
            account_id=job.account_id,
            job_id=job_id,
            held=job.estimated_credits,
            amount=job.estimated_credits,
        )
    return job


def claim_ingest(*, connection: Connection, job_id: uuid.UUID) -> Job | None:
    """The job, if it waits for its video to be stored and no other ingest holds its lease:
    one download at a time per job, however many messages (duplicates, the dispatcher's)
    ask for it. The lease and the due time run `INGEST_BUDGET`; a worker that dies
    mid-ingest leaves a lease that runs out, and the dispatcher sends the step again."""
    now = utcnow()
    lease = machine.INGEST_BUDGET
    return _CLAIM_INGEST.claim(
        connection, job_id, now=now, lease_ended=now - lease, due=now + lease
    )


def retry_ingest(*, session: Session, job_id: uuid.UUID, retry_in: float) -> None:
    """The download failed and is retried `retry_in` seconds from now; the lease is free."""
    _move(
        session,
        job_id,
        [JobStatus.INGESTING],
        ingest_started_at=None,
        due_at=utcnow() + timedelta(seconds=retry_in),
    )


def complete(*, session: Session, job: Job, media_asset_id: uuid.UUID, file_size: int) -> bool:
    """Finish an ingested job: its video is in the library. The result shows our copy's
    size (`file_size`), not what the provider claimed."""
    provided = job.provider_result or {}
    video = {**provided.get("video", {}), "file_size": file_size}
    result = {**provided, "video": video, "media_asset_id": str(media_asset_id)}
    completed = _COMPLETE(session, job.id, result=result)
    if completed is not None:
        after_commit(session, lambda: metrics.observe_finished(completed))
    return completed is not None


def fail_ingest(*, session: Session, job_id: uuid.UUID, reason: str) -> bool:
    """Ingestion failed for good: the job fails and its capture is refunded, so an account
    is charged only for a video in its library. The ledger stays append-only."""
    failed = _move(
        session,
        job_id,
        [JobStatus.INGESTING],
        status=JobStatus.FAILED,
        error=machine.ingest_failed(reason).to_dict(),
        ingest_error=reason,
        credits_used=0,
        completed_at=utcnow(),
        due_at=None,
    )
    if failed is None:
        return False
    ledger.refund(
        session=session,
        account_id=failed.account_id,
        job_id=job_id,
        charged=failed.estimated_credits,
    )
    after_commit(session, lambda: metrics.observe_finished(failed))
    return True


def expected_seconds(*, session: Session, model: VideoModel) -> int:
    """A new job's `estimated_seconds`: the median of its model's recent renders, read at
    most once a minute per process (`pacing.recent_renders`), else the catalog's estimate.
    Once the job is at the provider, the worker refines it with what the provider says."""
    recent = recent_renders(
        model.id, lambda: recent_render_seconds(session=session, model=model.id)
    )
    measured = measured_render_seconds(provider_says=None, recent=recent)
    return estimated_seconds(measured, estimate=model.estimated_seconds)


def recent_render_seconds(*, session: Session, model: str, limit: int = 20) -> list[float]:
    """How long the provider took for the model's latest delivered jobs (newest first)."""
    rows = session.execute(
        select(Job.started_at, Job.provider_completed_at)
        .where(Job.model == model, Job.provider_completed_at.is_not(None))
        .order_by(Job.provider_completed_at.desc())
        .limit(limit)
    ).all()
    return [(done - started).total_seconds() for started, done in rows if started and done]


# ---- the dispatcher's view ----------------------------------------------------------


def claim_due(
    *, session: Session, now: datetime, cutoff: datetime, limit: int, poll_token: str
) -> list[Job]:
    """Claim the unfinished jobs due at `cutoff` or earlier (oldest first, at most `limit`),
    skipping rows another dispatcher holds: each is due again `REDISPATCH_AFTER` from now,
    in case the step sent for it is lost too, and a revived poll loop gets `poll_token`,
    so a late message of the old loop exits. One statement."""
    due = (
        select(Job.id)
        .where(Job.due_at <= cutoff)
        .order_by(Job.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(
        session.scalars(
            update(Job)
            .where(Job.id.in_(due.scalar_subquery()))
            .values(due_at=now + machine.REDISPATCH_AFTER, poll_token=poll_token, updated_at=now)
            .returning(Job)
            .execution_options(synchronize_session=False, populate_existing=True)
        )
    )


def claim_parked(
    *, session: Session, until: datetime, limit: int, poll_token: str
) -> list[tuple[uuid.UUID, datetime]]:
    """Claim the parked polls (a job at the provider with no poll message: no token) due by
    `until`, oldest first, at most `limit`, skipping rows another dispatcher holds. Each
    gets `poll_token` for the message the caller sends and keeps its due time, so a lost
    message is overdue as any other. Returns each job's id and due time. One statement."""
    parked = (
        select(Job.id)
        .where(
            Job.due_at <= until,
            Job.poll_token.is_(None),
            Job.status.in_(ACTIVE_AT_PROVIDER),
        )
        .order_by(Job.due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(Job)
        .where(Job.id.in_(parked.scalar_subquery()))
        .values(poll_token=poll_token)
        .returning(Job.id, Job.due_at)
        .execution_options(synchronize_session=False)
    )
    return [(job_id, due_at) for job_id, due_at in rows if due_at is not None]  # all are
