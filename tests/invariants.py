"""The invariants every fault scenario must leave true, checked straight in PostgreSQL.

- Every job of the scenario is final: completed, failed or cancelled.
- A completed job has exactly one hold (a batch's item: its share of the batch's one
  hold, which is its items' estimates summed) and one capture (plus a release of any rest),
  `credits_used` equal to the capture, and exactly one media asset whose file exists.
- A failed or cancelled job has its hold released in full and nothing captured.
- Per account: balance == topups − captures == the grant − Σ credits_used, held == 0,
  available ≥ 0. Amounts are integer hundredths, so "balanced" means to the cent.
- Every job's events are numbered 1…`event_seq` without a gap, start with `job.queued`,
  end with its one final event, and the last shows the job exactly as it is.

All violations are collected and reported together, so a failure names every bad job.
"""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from sqlalchemy import select

from shared.jobs import events
from shared.jobs.models import Job, JobEvent
from shared.jobs.schemas import Job as JobView
from shared.ledger import service as ledger
from shared.ledger.models import LedgerEntry
from shared.media.models import MediaAsset
from shared.runtime import Runtime

FINAL = ("completed", "failed", "cancelled")


@dataclass
class Summary:
    """What the scenario ended with, for the test to print and to assert more on."""

    statuses: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    captured_units: int = 0
    released_units: int = 0

    def __str__(self) -> str:
        parts = [f"{status}={count}" for status, count in sorted(self.statuses.items())]
        if self.errors:
            parts.append("errors: " + ", ".join(f"{c}×{n}" for c, n in self.errors.items()))
        parts.append(f"captured={self.captured_units / 100:.2f} credits")
        return " ".join(parts)


def _as_uuids(values: Iterable[str | uuid.UUID]) -> set[uuid.UUID]:
    return {value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)) for value in values}


def job_statuses(runtime: Runtime, job_ids: Iterable[str | uuid.UUID]) -> dict[str, str]:
    """The internal status of each job, read from the database."""
    ids = _as_uuids(job_ids)
    with runtime.db.transaction() as session:
        rows = session.execute(select(Job.id, Job.status).where(Job.id.in_(ids))).all()
    return {str(job_id): status for job_id, status in rows}


def unfinished(runtime: Runtime, job_ids: Iterable[str | uuid.UUID]) -> dict[str, str]:
    return {
        job_id: status
        for job_id, status in job_statuses(runtime, job_ids).items()
        if status not in FINAL
    }


def assert_invariants(
    runtime: Runtime,
    accounts: dict[uuid.UUID, int],
    job_ids: Iterable[str | uuid.UUID],
) -> Summary:
    """Check the scenario's jobs and accounts; `accounts` maps account id → grant in units.

    The accounts must be the scenario's own: every job and ledger entry on them is checked,
    so a job the scenario does not know about (a phantom submit) is a violation too.
    """
    expected_jobs = _as_uuids(job_ids)
    account_ids = set(accounts)
    with runtime.db.transaction() as session:
        jobs = list(session.scalars(select(Job).where(Job.account_id.in_(account_ids))))
        entries = list(
            session.scalars(select(LedgerEntry).where(LedgerEntry.account_id.in_(account_ids)))
        )
        assets = list(
            session.scalars(select(MediaAsset).where(MediaAsset.account_id.in_(account_ids)))
        )
        written = session.scalars(
            select(JobEvent).where(JobEvent.account_id.in_(account_ids)).order_by(JobEvent.seq)
        )
        events_by_job: dict[uuid.UUID, list[JobEvent]] = defaultdict(list)
        for event in written:
            events_by_job[event.job_id].append(event)
        balances = {
            account_id: ledger.balance(session=session, account_id=account_id)
            for account_id in account_ids
        }

    problems: list[str] = []
    summary = Summary()
    found = {job.id for job in jobs}
    if found != expected_jobs:
        problems.append(
            f"jobs on the accounts differ from the scenario's: missing "
            f"{sorted(map(str, expected_jobs - found))}, unexpected "
            f"{sorted(map(str, found - expected_jobs))}"
        )

    by_job: dict[uuid.UUID | None, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    batch_holds: dict[uuid.UUID, list[int]] = defaultdict(list)
    for entry in entries:
        if entry.batch_id is not None:
            batch_holds[entry.batch_id].append(entry.amount)
        else:
            by_job[entry.job_id][entry.kind].append(entry.amount)
    # A batch holds once for its items: its hold is their estimates' sum, and each item's
    # share is checked below as the item's own hold.
    items: dict[uuid.UUID, list[Job]] = defaultdict(list)
    for job in jobs:
        if job.batch_id is not None:
            items[job.batch_id].append(job)
            by_job[job.id]["hold"].append(job.estimated_credits)
    for batch_id, holds in batch_holds.items():
        share = sum(job.estimated_credits for job in items[batch_id])
        if holds != [share]:
            problems.append(f"batch {batch_id}: holds {holds} != its items' estimates {share}")
    assets_by_job: dict[uuid.UUID | None, list[MediaAsset]] = defaultdict(list)
    for asset in assets:
        assets_by_job[asset.source_job_id].append(asset)

    for job in jobs:
        summary.statuses[job.status] += 1
        if job.error:
            summary.errors[str(job.error.get("code"))] += 1
        problems += _job_problems(runtime, job, by_job[job.id], assets_by_job[job.id])
        problems += _event_problems(job, events_by_job[job.id])

    for account_id, grant in accounts.items():
        mine = [entry for entry in entries if entry.account_id == account_id]
        totals = Counter()
        for entry in mine:
            totals[entry.kind] += entry.amount
        charged = sum(job.credits_used or 0 for job in jobs if job.account_id == account_id)
        summary.captured_units += totals["capture"]
        summary.released_units += totals["release"]
        found_balance = balances[account_id]
        if totals["topup"] != grant:
            problems.append(f"account {account_id}: topups {totals['topup']} != grant {grant}")
        if found_balance.balance != totals["topup"] - totals["capture"] + totals["refund"]:
            problems.append(
                f"account {account_id}: balance {found_balance} != topups − captures + refunds"
            )
        if found_balance.balance != grant - charged:
            problems.append(
                f"account {account_id}: balance {found_balance.balance} != grant {grant} − "
                f"Σ credits_used {charged}"
            )
        if found_balance.held != 0:
            problems.append(f"account {account_id}: {found_balance.held} still held at the end")
        if found_balance.available < 0:
            problems.append(f"account {account_id}: available {found_balance.available} < 0")
        strays = [entry for entry in mine if entry.job_id is not None and entry.job_id not in found]
        if strays:
            problems.append(f"account {account_id}: ledger entries of unknown jobs: {strays}")

    assert not problems, f"{len(problems)} invariant violation(s):\n" + "\n".join(problems)
    return summary


def _job_problems(
    runtime: Runtime, job: Job, entries: dict[str, list[int]], assets: list[MediaAsset]
) -> list[str]:
    name = f"job {job.id} ({job.status})"
    problems: list[str] = []
    if job.status not in FINAL:
        return [f"{name} is not final"]
    unexpected = set(entries) - {"hold", "capture", "release", "refund"}
    if unexpected:
        problems.append(f"{name}: unexpected ledger kinds {sorted(unexpected)}")
    holds, captures, releases = entries["hold"], entries["capture"], entries["release"]
    refunds = entries["refund"]
    if len(holds) != 1 or len(captures) > 1 or len(releases) > 1 or len(refunds) > 1:
        problems.append(f"{name}: ledger entries {dict(entries)}")
        return problems
    hold = holds[0]
    if hold != job.estimated_credits:
        problems.append(f"{name}: hold {hold} != estimate {job.estimated_credits}")
    if job.status == "completed":
        capture = captures[0] if captures else None
        release = releases[0] if releases else 0
        if capture is None:
            problems.append(f"{name}: completed without a capture")
        elif job.credits_used != capture:
            problems.append(f"{name}: credits_used {job.credits_used} != capture {capture}")
        elif capture + release != hold:
            problems.append(f"{name}: capture {capture} + release {release} != hold {hold}")
        if len(assets) != 1:
            problems.append(f"{name}: {len(assets)} media assets")
        else:
            asset = assets[0]
            if not runtime.storage.exists(asset.storage_key):
                problems.append(f"{name}: asset file {asset.storage_key} is missing")
            if (job.result or {}).get("media_asset_id") != str(asset.id):
                problems.append(f"{name}: result names asset {job.result}, not {asset.id}")
        if job.ingest_error:
            problems.append(f"{name}: completed without ingest: {job.ingest_error}")
    elif (job.error or {}).get("code") == "ingest_failed":
        # Delivered and paid, but its video could not be stored: the capture is refunded.
        if captures != [hold] or refunds != captures:
            problems.append(f"{name}: capture {captures} and refund {refunds} != hold {hold}")
        if job.credits_used != 0 or assets:
            problems.append(f"{name}: credits_used {job.credits_used}, {len(assets)} assets")
    else:
        if captures or refunds:
            problems.append(f"{name}: captured {captures} though not completed")
        if releases != [hold]:
            problems.append(f"{name}: release {releases} != hold {hold}")
        if job.credits_used not in (None, 0):
            problems.append(f"{name}: credits_used {job.credits_used} though not completed")
        if assets:
            problems.append(f"{name}: has {len(assets)} media assets though not completed")
    return problems


def _event_problems(job: Job, written: list[JobEvent]) -> list[str]:
    name = f"job {job.id} ({job.status})"
    numbers = [event.seq for event in written]
    if numbers != list(range(1, job.event_seq + 1)):
        return [f"{name}: events numbered {numbers}, event_seq {job.event_seq}"]
    types = [event.type for event in written]
    final = events.types_for(job.status)[-1]
    problems: list[str] = []
    if types[:1] != ["job.queued"] or types[-1:] != [final] or types.count(final) != 1:
        problems.append(f"{name}: events {types}")
    if written and written[-1].data != JobView.of(job, None).model_dump(mode="json"):
        problems.append(f"{name}: its last event shows {written[-1].data}")
    return problems
