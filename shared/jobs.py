"""The job's life: creation with its credit hold, and every state transition.

Each transition is a conditional update (`… WHERE id = :id AND status IN (:expected)`),
so a task delivered twice, or two workers racing, move a job at most once; whoever
loses the race sees `False`/`None` and stops. Functions flush, never commit.

    queued ─submit─▶ submitted ─poll─▶ running ─poll─▶ settling ─▶ ingesting ─▶ completed
       └────────────────┴─────────────────┴──▶ failed | cancelled (hold released)
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

from shared import accounts, ledger, metrics, pricing
from shared.catalog import Catalog, normalize_input
from shared.config import Settings
from shared.db import after_commit
from shared.errors import Conflict, InvalidInput
from shared.media.url_policy import UnsafeUrl, check_fetchable
from shared.models import IdempotencyKey, Job, utcnow
from shared.providers import fal_protocol
from shared.providers.base import ProviderResult, ProviderStatus

ACTIVE_AT_PROVIDER = ("submitted", "running")
CANCELLABLE = ("queued", *ACTIVE_AT_PROVIDER)
TERMINAL = ("completed", "failed", "cancelled")
PUBLIC_STATUS = {
    "queued": "queued",
    "submitted": "processing",
    "running": "processing",
    "settling": "processing",
    "ingesting": "processing",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
INTERNAL_STATUSES = {
    public: tuple(s for s, p in PUBLIC_STATUS.items() if p == public)
    for public in set(PUBLIC_STATUS.values())
}
MAX_LOG_LINES = 50
log = logging.getLogger(__name__)


def new_poll_token() -> str:
    return secrets.token_hex(8)


# ---- creation ------------------------------------------------------------------------


@dataclass(frozen=True)
class Submission:
    job: Job
    created: bool  # False when an Idempotency-Key replayed an earlier job


def _request_hash(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_job(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    provider_name: str,
    account_id: uuid.UUID,
    body: Any,
    idempotency_key: str | None,
) -> Submission:
    """Validate, quote, hold the estimate and write the job, all in the caller's transaction."""
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.", fields={"body": "must be an object"})
    unknown = sorted(set(body) - {"model", "input", "metadata"})
    if unknown:
        raise InvalidInput(
            "Unknown top-level fields: " + ", ".join(unknown) + ".",
            fields={name: "is not accepted" for name in unknown},
        )
    model = catalog.get(body.get("model"))
    normalized = normalize_input(model, body.get("input"))
    if "image_url" in normalized:
        try:
            check_fetchable(
                normalized["image_url"], allow_private=settings.allow_private_image_urls
            )
        except UnsafeUrl as exc:
            raise InvalidInput(
                f"input.image_url {exc}.", fields={"input.image_url": str(exc)}
            ) from None
    metadata = body.get("metadata", {})
    if not isinstance(metadata, dict):
        raise InvalidInput(
            "`metadata` must be an object.", fields={"metadata": "must be an object"}
        )
    quote = pricing.quote(model, model.output_seconds(normalized), settings)

    # Lock the account before looking at idempotency keys and credits: concurrent submits
    # of one account run this section one at a time, so neither a key nor a credit races.
    ledger.lock_account(session=session, account_id=account_id)
    request_hash = _request_hash(body)
    if idempotency_key is not None:
        earlier = session.get(IdempotencyKey, (account_id, idempotency_key))
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise Conflict(
                    "This Idempotency-Key was used with a different request body.",
                    code="idempotency_conflict",
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
    status: str | None,
    job_type: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[Job], str | None]:
    """The account's jobs, newest first, and the cursor of the next page (or None)."""
    query = select(Job).where(Job.account_id == account_id)
    if status is not None:
        if status not in INTERNAL_STATUSES:
            allowed = ", ".join(sorted(INTERNAL_STATUSES))
            raise InvalidInput("Unknown status.", fields={"status": f"must be one of {allowed}"})
        query = query.where(Job.status.in_(INTERNAL_STATUSES[status]))
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
    expected: Sequence[str],
    *conditions: Any,
    **values: Any,
) -> bool:
    """The one conditional update every transition goes through."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(expected), *conditions)
        .values(updated_at=utcnow(), **values)
        .execution_options(synchronize_session=False)
    )
    moved = result.rowcount == 1
    if moved and "status" in values:
        log.info("job is now %s", values["status"], extra={"job_id": str(job_id)})
    return moved


def _load(session: Session, job_id: uuid.UUID) -> Job:
    """The job as the database has it now (after conditional updates that bypass the ORM)."""
    return session.get_one(Job, job_id, populate_existing=True)


def claim_submit(*, session: Session, job_id: uuid.UUID) -> Job | None:
    """Record the submit attempt before calling the provider; None if someone else has."""
    claimed = _move(
        session,
        job_id,
        ["queued"],
        Job.submit_attempted_at.is_(None),
        submit_attempted_at=utcnow(),
    )
    return _load(session, job_id) if claimed else None


def forget_submit_attempt(*, session: Session, job_id: uuid.UUID) -> None:
    """The provider surely did not take the request (it answered with an error): allow a retry."""
    _move(session, job_id, ["queued"], submit_attempted_at=None)


def record_submitted(
    *, session: Session, job_id: uuid.UUID, request_id: str, poll_token: str
) -> bool:
    """False if the job was cancelled while the provider call was in flight."""
    started = utcnow()
    submitted = _move(
        session,
        job_id,
        ["queued"],
        status="submitted",
        provider_request_id=request_id,
        started_at=started,
        poll_token=poll_token,
    )
    if submitted:
        job = _load(session, job_id)
        waited = (started - job.created_at).total_seconds()
        after_commit(session, lambda: metrics.QUEUE_WAIT.labels(job.model).observe(waited))
    return submitted


def claim_poll(*, session: Session, job_id: uuid.UUID, token: str, new_token: str) -> Job | None:
    """Take the poll loop's turn. A stale or duplicate poll message holds an old token."""
    claimed = _move(
        session,
        job_id,
        ACTIVE_AT_PROVIDER,
        Job.poll_token == token,
        poll_token=new_token,
        poll_count=Job.poll_count + 1,
    )
    return _load(session, job_id) if claimed else None


def record_progress(*, session: Session, job: Job, status: ProviderStatus) -> None:
    values: dict[str, Any] = {"queue_position": status.queue_position}
    if status.progress is not None:
        values["progress"] = max(job.progress, status.progress)
    if status.logs:
        values["provider_logs"] = status.logs[-MAX_LOG_LINES:]
    if status.state == "running":
        values["status"] = "running"
    _move(session, job.id, ACTIVE_AT_PROVIDER, **values)


def record_delivered(*, session: Session, job_id: uuid.UUID, result: ProviderResult) -> bool:
    """The provider finished: keep its result and move on to settlement."""
    return _move(
        session,
        job_id,
        ACTIVE_AT_PROVIDER,
        status="settling",
        progress=100,
        queue_position=None,
        provider_result=result.to_dict(),
        provider_completed_at=utcnow(),
    )


def _end_unpaid(
    session: Session, job_id: uuid.UUID, expected: Sequence[str], status: str, **values: Any
) -> bool:
    """End the job without a charge: failed or cancelled, hold released, in one step."""
    moved = _move(
        session,
        job_id,
        expected,
        status=status,
        completed_at=utcnow(),
        queue_position=None,
        **values,
    )
    if moved:
        job = _load(session, job_id)
        ledger.release(session=session, account_id=job.account_id, job_id=job_id)
        after_commit(session, lambda: metrics.observe_finished(job))
    return moved


def fail(
    *,
    session: Session,
    job_id: uuid.UUID,
    code: str,
    message: str,
    expected: Sequence[str] = CANCELLABLE,
) -> bool:
    """Fail the job and release its hold; False if it had already moved on."""
    return _end_unpaid(
        session, job_id, expected, "failed", error={"code": code, "message": message}
    )


def confirm_cancelled(*, session: Session, job_id: uuid.UUID) -> bool:
    """The provider stopped the request we asked it to cancel: nothing is charged."""
    return _end_unpaid(session, job_id, ACTIVE_AT_PROVIDER, "cancelled")


def cancel(*, session: Session, account_id: uuid.UUID, job_id: str) -> tuple[Job, bool]:
    """Cancel a job; returns the job and whether the provider must be asked to stop it.

    A queued job is cancelled at once and its hold released. A job at the provider gets
    a cancel request: the provider may still finish it ("may still complete"), so the
    job ends on what really happens there — cancelled and released, or delivered and
    charged. Cancelling twice answers the same; a delivered job cannot be cancelled.
    """
    job = get_job(session=session, account_id=account_id, job_id=job_id)
    if _end_unpaid(session, job.id, ["queued"], "cancelled"):
        return _load(session, job.id), False
    if _move(
        session,
        job.id,
        ACTIVE_AT_PROVIDER,
        Job.cancel_requested_at.is_(None),
        cancel_requested_at=utcnow(),
    ):
        return _load(session, job.id), True
    job = _load(session, job.id)
    if job.status == "cancelled" or job.cancel_requested_at is not None:
        return job, False
    raise Conflict(
        f"Job {job.id} is {PUBLIC_STATUS[job.status]} and can no longer be cancelled.",
        code="not_cancellable",
        status=PUBLIC_STATUS[job.status],
    )


def record_provider_failure(*, session: Session, job: Job, code: str, message: str | None) -> str:
    """A request that ended without a video: cancelled if we asked for that, else failed."""
    if code == "cancelled" or job.cancel_requested_at is not None:
        return "cancelled" if confirm_cancelled(session=session, job_id=job.id) else "ignored"
    failed = fail(
        session=session,
        job_id=job.id,
        code=code,
        message=message or "the provider failed the request",
        expected=ACTIVE_AT_PROVIDER,
    )
    return "failed" if failed else "ignored"


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


def settle(*, session: Session, job_id: uuid.UUID) -> bool:
    """Capture the job's cost exactly once and release the rest of its hold.

    The cost is the estimate: prices are per requested second (or per video), which is
    what the provider bills.
    """
    if not _move(session, job_id, ["settling"], status="ingesting"):
        return False
    job = _load(session, job_id)
    charged = ledger.capture(
        session=session, account_id=job.account_id, job_id=job_id, amount=job.estimated_credits
    )
    _move(session, job_id, ["ingesting"], credits_used=charged)
    return True


def complete(
    *,
    session: Session,
    job_id: uuid.UUID,
    media_asset_id: uuid.UUID | None,
    ingest_error: str | None = None,
) -> bool:
    """Finish an ingested job; if ingestion failed for good it still completes (it was paid)."""
    job = _load(session, job_id)
    result = dict(job.provider_result or {})
    result["media_asset_id"] = str(media_asset_id) if media_asset_id else None
    completed = _move(
        session,
        job_id,
        ["ingesting"],
        status="completed",
        result=result,
        ingest_error=ingest_error,
        completed_at=utcnow(),
    )
    if completed:
        finished = _load(session, job_id)
        after_commit(session, lambda: metrics.observe_finished(finished))
    return completed


# ---- the sweeper's view --------------------------------------------------------------


def overdue_jobs(*, session: Session, now: datetime) -> list[Job]:
    """Jobs not yet delivered whose deadline has passed."""
    return list(
        session.scalars(
            select(Job).where(Job.status.in_(CANCELLABLE), Job.deadline_at < now).limit(500)
        )
    )


def stale_jobs(*, session: Session, now: datetime, stale_after_seconds: float) -> list[Job]:
    """Unfinished jobs that have not moved for too long: their messages may be lost."""
    cutoff = now - timedelta(seconds=stale_after_seconds)
    return list(
        session.scalars(
            select(Job)
            .where(Job.status.notin_(TERMINAL), Job.updated_at < cutoff)
            .order_by(Job.updated_at)
            .limit(500)
        )
    )


def revive(*, session: Session, job: Job, **values: Any) -> bool:
    """Claim a stale job for one revival: the update only wins if nobody moved it since it
    was read, so a slow loop that wakes up, or a second sweeper, never doubles the work."""
    return _move(session, job.id, [job.status], Job.updated_at == job.updated_at, **values)
