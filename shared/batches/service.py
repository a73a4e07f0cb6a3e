"""Batches: many jobs under one aggregate hold, created all at once or not at all.

A batch is checked item by item (an error names `items[i]…`), priced, budget-checked and
held as one amount under the account's lock; then each item becomes an ordinary job (its
own state machine, fair scheduling, events), marked with the batch. Each completed item
captures its share of the hold; a failed or cancelled one releases it. The batch's status
and counts are read from its items, never stored.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import accounts
from shared.batches.models import Batch
from shared.batches.schemas import BatchCounts, BatchCreate, BatchStatus
from shared.budgets import service as budgets
from shared.catalog import Catalog
from shared.config import Settings
from shared.db import utcnow
from shared.errors import IdempotencyConflict, InvalidInput, InvalidModel
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import JobCreate
from shared.jobs.status import JobStatus, PublicStatus
from shared.ledger import service as ledger


@dataclass(frozen=True)
class BatchSubmission:
    batch: Batch
    items: list[Job]  # in the request's order
    created: bool  # False when an Idempotency-Key replayed an earlier batch


def _price_items(settings: Settings, catalog: Catalog, request: BatchCreate) -> list[jobs.Priced]:
    priced = []
    for index, item in enumerate(request.items):
        where = f"items[{index}]"
        try:
            priced.append(
                jobs.price_request(
                    settings=settings,
                    catalog=catalog,
                    request=JobCreate(model=item.model, input=item.input, metadata=item.metadata),
                )
            )
        except InvalidInput as exc:
            fields = {f"{where}.{name}": problem for name, problem in exc.extra["fields"].items()}
            raise InvalidInput(f"{where}: {exc.message}", fields=fields) from None
        except InvalidModel as exc:
            raise InvalidModel(f"{where}: {exc.message}", **exc.extra) from None
    return priced


def _request_hash(request: BatchCreate) -> str:
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def create_batch(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    provider_name: str,
    account_id: uuid.UUID,
    api_key_id: uuid.UUID | None,
    request: BatchCreate,
    idempotency_key: str | None,
) -> BatchSubmission:
    """Check and price every item, then (under the account's lock) check budgets, hold the
    sum and write the batch and its jobs, in the caller's transaction."""
    priced = _price_items(settings, catalog, request)
    seconds = {  # read once a minute per model and process: a call per item is cheap
        item.model.id: jobs.expected_seconds(session=session, model=item.model) for item in priced
    }
    account = ledger.lock_account(session=session, account_id=account_id)
    request_hash = _request_hash(request)
    if idempotency_key is not None:
        earlier = session.scalar(
            select(Batch).where(
                Batch.account_id == account_id, Batch.idempotency_key == idempotency_key
            )
        )
        if earlier is not None:
            if earlier.request_hash != request_hash:
                raise IdempotencyConflict(
                    "This Idempotency-Key was used with a different batch.", batch_id=earlier.id
                )
            return BatchSubmission(earlier, items(session=session, batch=earlier), created=False)
    total = sum(item.units for item in priced)
    if account.has_budgets:
        budgets.check(session=session, account_id=account_id, key_id=api_key_id, amount=total)
    now = utcnow()
    batch = Batch(
        id=uuid.uuid4(),
        account_id=account_id,
        api_key_id=api_key_id,
        item_count=len(priced),
        held=total,
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        created_at=now,
    )
    session.add(batch)
    session.flush()
    ledger.place_hold(session=session, account_id=account_id, batch_id=batch.id, amount=total)
    made = [
        jobs.insert_job(
            session,
            jobs.job_row(
                settings=settings,
                priced=item,
                provider_name=provider_name,
                account_id=account_id,
                api_key_id=api_key_id,
                account=account,
                metadata=spec.metadata,
                # a microsecond apart: the items keep the request's order (in listings and
                # in the fair queue)
                now=now + timedelta(microseconds=index),
                estimated_seconds=seconds[item.model.id],
                batch_id=batch.id,
            ),
        )
        for index, (item, spec) in enumerate(zip(priced, request.items, strict=True))
    ]
    return BatchSubmission(batch, made, created=True)


def get_batch(*, session: Session, account_id: uuid.UUID, batch_id: str) -> Batch:
    """The account's batch; another account's is not found, never forbidden."""
    return accounts.get_owned(
        session=session, model=Batch, account_id=account_id, raw_id=batch_id, noun="batch"
    )


def items(*, session: Session, batch: Batch) -> list[Job]:
    """The batch's jobs in the request's order."""
    return list(
        session.scalars(
            select(Job).where(Job.batch_id == batch.id).order_by(Job.created_at, Job.id)
        )
    )


def cancel_batch(*, session: Session, account_id: uuid.UUID, batch_id: str) -> Batch:
    """Cancel every item not yet at the provider, releasing its share of the hold; items
    at the provider (or done) are left to finish."""
    batch = get_batch(session=session, account_id=account_id, batch_id=batch_id)
    for job in items(session=session, batch=batch):
        if job.status is JobStatus.QUEUED:
            jobs.cancel_queued(session=session, job_id=job.id)
    return batch


def counts(rows: list[Job]) -> BatchCounts:
    tally: dict[str, int] = {}
    for job in rows:
        tally[job.status.public.value] = tally.get(job.status.public.value, 0) + 1
    return BatchCounts(**tally)


def status(rows: list[Job]) -> BatchStatus:
    """The batch's status, from its items' (see `schemas.Batch`)."""
    public = [job.status.public for job in rows]
    if any(not job.status.is_terminal for job in rows):
        return "processing"
    completed = public.count(PublicStatus.COMPLETED)
    if completed == len(public):
        return "completed"
    if completed:
        return "completed_with_errors"
    return "cancelled" if all(p is PublicStatus.CANCELLED for p in public) else "failed"
