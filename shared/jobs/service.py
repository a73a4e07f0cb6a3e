"""The job's life in the database: creation with its credit hold, and every transition.

Each transition is one conditional `UPDATE … WHERE id = :id AND status IN (:expected)
RETURNING *`, so a task delivered twice, or two workers racing, move a job at most once;
whoever loses the race gets `None` and stops. What a transition may do is decided by
`shared.jobs.machine`; this module only applies it. Functions flush, never commit.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from shared import accounts, metrics
from shared.catalog import Catalog, normalize_input, pricing
from shared.config import Settings
from shared.db import after_commit, utcnow
from shared.errors import IdempotencyConflict, InvalidInput, NotCancellable
from shared.jobs import machine
from shared.jobs.machine import Failure
from shared.jobs.models import IdempotencyKey, Job
from shared.jobs.schemas import JobCreate
from shared.jobs.status import ACTIVE_AT_PROVIDER, CANCELLABLE, TERMINAL, JobStatus, PublicStatus
from shared.ledger import service as ledger
from shared.media.url_policy import UnsafeUrl, check_fetchable
from shared.providers import fal_protocol
from shared.providers.base import ProviderResult, ProviderStatus

MAX_LOG_LINES = 50
log = logging.getLogger(__name__)


def new_poll_token() -> str:
    return secrets.token_hex(8)


# ---- creation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier job


def _request_hash(request: JobCreate) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    provider_name: str,
    account_id: uuid.UUID,
    request: JobCreate,
    idempotency_key: str | None,
) -> Submission:
    """Quote, hold the estimate and write the job, all in the caller's transaction.

    `request` has its shape checked already; the model's own input schema is checked here.
    """
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
    metadata = request.metadata
    quote = pricing.quote(model, model.output_seconds(normalized), settings)

    # Lock the account before looking at idempotency keys and credits: concurrent submits
    # of one account run this section one at a time, so neither a key nor a credit races.
    ledger.lock_account(session=session, account_id=account_id)
    request_hash = _request_hash(request)
    if idempotency_key is not None:
        earlier = session.get(IdempotencyKey, (account_id, idempotency_key))
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise IdempotencyConflict(
                    "This Idempotency-Key was used with a different request body.",
                    job_id=str(earlier.job_id),
                )
            return Submission(session.get_one(Job, earlier.job_id), created=False)

    now = utcnow()
    deadline = settings.job_deadline_seconds or model.deadline_seconds
    job = Job(
        id=uuid.uuid4(),
        account_id=account_id,
        model=model.id,
        input=normalized,
        job_metadata=metadata,
        status=JobStatus.QUEUED,
        provider=provider_name,
        estimated_seconds=model.estimated_seconds,
        estimated_credits=quote.units,
        created_at=now,
        updated_at=now,
        deadline_at=now + timedelta(seconds=deadline),
    )
    session.add(job)
    session.flush()
    ledger.place_hold(session=session, account_id=account_id, job_id=job.id, amount=quote.units)
    if idempotency_key is not None:
        session.add(
            IdempotencyKey(
                account_id=account_id, key=idempotency_key, request_hash=request_hash, job_id=job.id
            )
        )
        session.flush()
    return Submission(job, created=True)


# ---- reading -------------------------------------------------------------------------


def get_job(*, session: Session, account_id: uuid.UUID, job_id: str) -> Job:
    return accounts.get_owned(
        session=session, model=Job, account_id=account_id, raw_id=job_id, noun="job"
    )


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, job_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        moment = datetime.fromisoformat(created)
        if moment.tzinfo is None:
            raise ValueError("cursor time without a zone")
        return moment, uuid.UUID(job_id)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("Bad cursor.", fields={"cursor": "use next_cursor as given"}) from None


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
    if cursor is not None:
        created, job_id = _decode_cursor(cursor)
        query = query.where(
            or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    page = rows[:limit]
    return page, (_encode_cursor(page[-1]) if len(rows) > limit else None)


# ---- transitions ---------------------------------------------------------------------


def _move(
    session: Session,
    job_id: uuid.UUID,
    expected: Sequence[JobStatus],
    *conditions: Any,
    **values: Any,
) -> Job | None:
    """The one conditional update every transition goes through: the job as it is after
    the update, or None if it was not in an expected state (someone else moved it)."""
    target = values.get("status")
    if target is not None:
        machine.check_transition(tuple(expected), target)
    job = session.scalars(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(expected), *conditions)
        .values(updated_at=utcnow(), **values)
        .returning(Job)
        .execution_options(synchronize_session=False, populate_existing=True)
    ).one_or_none()
    if job is not None and target is not None:
        ids = {"job_id": str(job_id), "account_id": str(job.account_id)}
        log.info("job is now %s", target, extra=ids)
    return job


def claim_submit(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """Record the submit attempt before calling the provider; None if someone else has."""
    return _move(
        session,
        job_id,
        [JobStatus.QUEUED],
        Job.submit_attempted_at.is_(None),
        submit_attempted_at=utcnow(),
    )


def forget_submit_attempt(*, session: Session, job_id: uuid.UUID) -> None:
    """The provider surely did not take the request (it answered with an error): allow a retry."""
    _move(session, job_id, [JobStatus.QUEUED], submit_attempted_at=None)


def record_submitted(
    *, session: Session, job_id: uuid.UUID, request_id: str, poll_token: str
) -> Job | None:
    """None if the job was cancelled while the provider call was in flight."""
    started = utcnow()
    job = _move(
        session,
        job_id,
        [JobStatus.QUEUED],
        status=JobStatus.SUBMITTED,
        provider_request_id=request_id,
        started_at=started,
        poll_token=poll_token,
    )
    if job is not None:
        waited, model = (started - job.created_at).total_seconds(), job.model
        after_commit(session, lambda: metrics.QUEUE_WAIT.labels(model).observe(waited))
    return job


def claim_poll(*, session: Session, job_id: uuid.UUID, token: str, new_token: str) -> Job | None:
    """Take the poll loop's turn. A stale or duplicate poll message holds an old token."""
    return _move(
        session,
        job_id,
        ACTIVE_AT_PROVIDER,
        Job.poll_token == token,
        poll_token=new_token,
        poll_count=Job.poll_count + 1,
    )


def record_progress(*, session: Session, job: Job, status: ProviderStatus) -> None:
    values: dict[str, Any] = {"queue_position": status.queue_position}
    if status.progress is not None:
        values["progress"] = max(job.progress, status.progress)
    if status.logs:
        values["provider_logs"] = status.logs[-MAX_LOG_LINES:]
    expected: Sequence[JobStatus] = ACTIVE_AT_PROVIDER
    moved_to = machine.status_for_report(status.state)
    if moved_to is not None and moved_to != job.status:
        values["status"], expected = moved_to, [job.status]
    _move(session, job.id, expected, **values)


def record_delivered(*, session: Session, job_id: uuid.UUID, result: ProviderResult) -> bool:
    """The provider finished: keep its result and move on to settlement."""
    return (
        _move(
            session,
            job_id,
            ACTIVE_AT_PROVIDER,
            status=JobStatus.SETTLING,
            progress=100,
            queue_position=None,
            provider_result=result.to_dict(),
            provider_completed_at=utcnow(),
        )
        is not None
    )


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


def cancel(*, session: Session, account_id: uuid.UUID, job_id: str) -> tuple[Job, bool]:
    """Cancel a job; returns the job and whether the provider must be asked to stop it.

    A queued job is cancelled at once and its hold released. A job at the provider gets
    a cancel request: the provider may still finish it ("may still complete"), so the
    job ends on what really happens there — cancelled and released, or delivered and
    charged. Cancelling twice answers the same; a delivered job cannot be cancelled.
    """
    job = get_job(session=session, account_id=account_id, job_id=job_id)
    cancelled = _end_unpaid(session, job.id, [JobStatus.QUEUED], JobStatus.CANCELLED)
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
    *, session: Session, request_id: str, ok: bool, payload: Any, error: str | None
) -> tuple[str, Job | None]:
    """Move a job on from a provider's completion callback.

    Callbacks come at least once and in any order: whatever the job's state no longer
    allows (a second delivery, an error after the result) is ignored, not an error.
    Returns the outcome ("delivered", "failed", "cancelled", "ignored") and the job.
    """
    job = session.scalar(select(Job).where(Job.provider_request_id == request_id))
    if job is None or job.status not in ACTIVE_AT_PROVIDER:
        return "ignored", job
    if ok:
        delivered = record_delivered(
            session=session, job_id=job.id, result=fal_protocol.parse_result(payload)
        )
        return ("delivered" if delivered else "ignored"), job
    details = payload if isinstance(payload, dict) else {}
    message = error or str(details.get("detail") or "the provider failed the request")
    code = fal_protocol.error_code(details.get("error_type"))
    return record_provider_failure(session=session, job=job, code=code, message=message), job


def settle(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """Capture the job's cost exactly once and release the rest of its hold.

    The cost is the estimate: prices are per requested second (or per video), which is
    what the provider bills. The hold is the estimate too, so the charge is known before
    the update and goes in with it.
    """
    job = _move(
        session,
        job_id,
        [JobStatus.SETTLING],
        status=JobStatus.INGESTING,
        credits_used=Job.estimated_credits,
    )
    if job is not None:
        ledger.capture(
            session=session,
            account_id=job.account_id,
            job_id=job_id,
            held=job.estimated_credits,
            amount=job.estimated_credits,
        )
    return job


def claim_ingest(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """The job if it waits for its video to be stored (one read; ingest runs outside)."""
    return session.scalars(
        select(Job)
        .where(Job.id == job_id, Job.status == JobStatus.INGESTING)
        .execution_options(populate_existing=True)
    ).one_or_none()


def complete(*, session: Session, job: Job, media_asset_id: uuid.UUID) -> bool:
    """Finish an ingested job: its video is in the library."""
    result = {**(job.provider_result or {}), "media_asset_id": str(media_asset_id)}
    completed = _move(
        session,
        job.id,
        [JobStatus.INGESTING],
        status=JobStatus.COMPLETED,
        result=result,
        completed_at=utcnow(),
    )
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


# ---- the sweeper's view --------------------------------------------------------------


def jobs_to_drive(*, session: Session, now: datetime, stale_after: timedelta) -> list[Job]:
    """Unfinished jobs past their deadline or not moved for `stale_after`: the candidates
    for `machine.next_step`."""
    return list(
        session.scalars(
            select(Job)
            .where(
                Job.status.notin_(TERMINAL),
                or_(
                    Job.updated_at < now - stale_after,
                    and_(Job.status.in_(CANCELLABLE), Job.deadline_at < now),
                ),
            )
            .order_by(Job.updated_at)
            .limit(500)
        )
    )


def revive(*, session: Session, job: Job, **values: Any) -> Job | None:
    """Claim a stale job for one revival: the update only wins if nobody moved it since it
    was read, so a slow loop that wakes up, or a second sweeper, never doubles the work."""
    return _move(session, job.id, [job.status], Job.updated_at == job.updated_at, **values)
