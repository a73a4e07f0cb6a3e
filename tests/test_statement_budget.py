"""The database work of one job in the worker, counted and bounded: it fails if it grows.

A private worker (its own queue and metrics folder) runs one job end to end; its
`naive_db_statements_total` and `naive_db_transactions_total` (every process of the
worker, summed by prometheus-client's multiprocess mode) are read before and after.
Before the state machine used `UPDATE … RETURNING`, a 4-poll job cost the worker 37
statements in 20 transactions; a 1-poll job cost 9 in 7 (docs/benchmarks.md), and 13 in 7
with its job events (4 inserts: submitted, delivered, settled, completed with its asset).
A batch of polls is counted the same way: its statements do not grow with its jobs.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from services.worker.celery_app import POLL_BATCH, make_celery
from shared.config import Settings, load_settings
from shared.jobs.models import Job
from shared.runtime import Runtime
from tests.helpers import generate, stalled_renders, wait_for_job, wait_task_done
from tests.stack import running_worker, worker_with_metrics

# Per job: submit (claim; record, its event) 3 + settle (update, capture, its event) 3 +
# ingest (claim; the asset inserted once, complete, its two events in one insert) 4, in
# 2 + 1 + 2 transactions: one statement per state change, one per change a customer sees
# (the job events' outbox, written in the same transaction), and settle's charge and
# ingest's asset (the ledger's and the library's rows).
FIXED_STATEMENTS = 10
FIXED_TRANSACTIONS = 5
# Per poll: the claim, the progress (or the delivery) it writes, and its event if the
# customer sees a change (a poll that changes nothing seen writes none).
STATEMENTS_PER_POLL = 3
TRANSACTIONS_PER_POLL = 2
# A batch of polls (services/worker/poll_tasks.py) whose reports change nothing a customer
# sees: one claim for all its jobs and one write for all their reports, in two
# transactions, however many jobs it carries.
BATCH_JOBS = 50
BATCH_STATEMENTS = 2
BATCH_TRANSACTIONS = 2


def _counters(port: int) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    totals: dict[str, float] = {"statements": 0.0, "transactions": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "naive_db_statements_total":
                totals["statements"] += sample.value
            elif sample.name == "naive_db_transactions_total":
                totals["transactions"] += sample.value
    return totals


def test_one_job_costs_the_worker_a_bounded_number_of_statements(
    make_app: Callable[..., Flask],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    queue = f"{test_env['CELERY_QUEUE']}-budget"
    client = make_app(CELERY_QUEUE=queue).test_client()
    env, port = worker_with_metrics({**test_env, "CELERY_QUEUE": queue}, tmp_path / "metrics")
    account = make_account()
    with running_worker(env, tmp_path / "worker.log", concurrency=1):
        before = _counters(port)
        job_id = generate(client, account, "A kite over dunes [sim latency=1]")["job_id"]
        assert wait_for_job(client, account, job_id)["status"] == "completed"
        after = _counters(port)

    with runtime.db.transaction() as session:
        polls = session.get_one(Job, uuid.UUID(job_id)).poll_count
    statements = after["statements"] - before["statements"]
    transactions = after["transactions"] - before["transactions"]
    print(f"\n{polls} polls: {statements:.0f} statements in {transactions:.0f} transactions")
    assert polls >= 1
    assert statements <= FIXED_STATEMENTS + STATEMENTS_PER_POLL * polls
    assert transactions <= FIXED_TRANSACTIONS + TRANSACTIONS_PER_POLL * polls


def test_a_batch_of_polls_costs_one_claim_and_one_write(
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    runtime: Runtime,
    settings: Settings,
    tmp_path: Path,
) -> None:
    changes = {"CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-batch", "POLL_HORIZON_SECONDS": "2"}
    env, port = worker_with_metrics({**test_env, **changes}, tmp_path / "metrics")
    celery = make_celery(load_settings(env))
    ids = stalled_renders(runtime, settings, make_account("1000").id, BATCH_JOBS, "t")
    log = tmp_path / "worker.log"

    def run_batch(token: str) -> None:
        wait_task_done(log, celery.send_task(POLL_BATCH, args=(token, [str(i) for i in ids])).id)

    with running_worker(env, log, concurrency=1):
        run_batch("stale")  # the child's first connection and statements, not counted
        before = _counters(port)
        run_batch("t")
        after = _counters(port)

    with runtime.db.transaction() as session:
        polls = [session.get_one(Job, job_id).poll_count for job_id in ids]
    statements = after["statements"] - before["statements"]
    transactions = after["transactions"] - before["transactions"]
    print(f"\n{len(ids)} polls in a batch: {statements:.0f} statements, {transactions:.0f} tx")
    assert polls == [1] * BATCH_JOBS
    assert statements == BATCH_STATEMENTS
    assert transactions == BATCH_TRANSACTIONS
