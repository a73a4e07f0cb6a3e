"""Redis and PostgreSQL bytes per in-flight job, at 100, 1,000 and 10,000 jobs in flight.

    python -m bench.footprint [--levels 100,1000,10000] [--accounts 100] [--batch 500]

Self-contained. On a scratch PostgreSQL database and Redis db 9, jobs are created the way
the API creates them (the domain's `create_job`: the job, its credit hold, and, since
API clients and agents send one, an Idempotency-Key row), in batches of `--batch` per
transaction, spread over `--accounts` accounts; after each commit their submit messages
go, as the API sends them (`send_task(naive.submit_job, (job_id,))`), to a queue no
worker reads, so every job stays queued and in flight.

At each level (cumulative):
  * PostgreSQL: `pg_total_relation_size` (heap + TOAST + indexes) of jobs, ledger_entries
    and idempotency_keys after `VACUUM ANALYZE`, minus the same before the first job;
  * Redis: `MEMORY USAGE <queue> SAMPLES 0` (every element counted) and the `INFO memory`
    `used_memory` delta (the server is shared with other test runs: indicative only).
A job in flight has one ledger entry (its hold); a finished one has three (hold, and
capture + release or release), and a finished job's message is gone from Redis.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import psycopg
import redis

from bench import harness
from services.worker.celery_app import SUBMIT_JOB, make_celery
from shared import accounts, catalog
from shared.config import load_settings
from shared.db import Database
from shared.jobs import service as jobs
from shared.jobs.schemas import JobCreate

REDIS_DB = 9
TABLES = ("jobs", "ledger_entries", "idempotency_keys")
BODY = {
    "model": harness.MODEL,
    "input": {"prompt": "A golden retriever running on a beach at sunset", "duration": "5"},
}


def pg_sizes(plain_url: str) -> dict[str, dict[str, int]]:
    """Per table, after VACUUM ANALYZE: total, table (heap, FSM, VM, TOAST), indexes, and
    each index as `index NAME`."""
    with psycopg.connect(plain_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE " + ", ".join(TABLES))
        sizes = {}
        for table in TABLES:
            total, heap, indexes = conn.execute(
                "SELECT pg_total_relation_size(%s), pg_table_size(%s), pg_indexes_size(%s)",
                (table, table, table),
            ).fetchone()
            sizes[table] = {"total": total, "table": heap, "indexes": indexes}
        for table, index, size in conn.execute(
            "SELECT indrelid::regclass::text, indexrelid::regclass::text, "
            "pg_relation_size(indexrelid) FROM pg_index WHERE indrelid = ANY(%s::regclass[])",
            (list(TABLES),),
        ).fetchall():
            sizes[table][f"index {index}"] = size
    return sizes


def redis_sizes(client: redis.Redis, queue: str) -> dict[str, int]:
    usage = client.memory_usage(queue, samples=0) or 0
    first = client.lindex(queue, 0)
    return {
        "queue": usage,
        "length": client.llen(queue),
        "message": len(first) if first else 0,
        "used_memory": client.info("memory")["used_memory"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="100,1000,10000")
    parser.add_argument("--accounts", type=int, default=100)
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    started = time.monotonic()
    harness.print_machine()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-footprint-")))
        database_url = stack.enter_context(harness.scratch_database("naive_bench"))
        plain_url = database_url.replace("postgresql+psycopg://", "postgresql://")
        queue = harness.unique_queue("footprint")
        broker = harness.redis_url(REDIS_DB)
        stack.callback(harness.delete_redis_keys, broker, queue)
        settings = load_settings(
            {
                "DATABASE_URL": database_url,
                "CELERY_BROKER_URL": broker,
                "CELERY_QUEUE": queue,
                "NAIVE_DATA_DIR": str(work / "data"),
            }
        )
        celery = make_celery(settings)
        client = redis.Redis.from_url(broker)
        stack.callback(client.close)
        db = Database(database_url)
        stack.callback(db.dispose)
        with db.transaction() as session:
            account_ids = [
                accounts.create_account(
                    session=session, name=f"bench-{i}", credits=Decimal(10_000_000)
                ).account_id
                for i in range(args.accounts)
            ]

        pg_base, redis_base = pg_sizes(plain_url), redis_sizes(client, queue)
        created, rows, detail = 0, [], None
        for level in levels:
            while created < level:
                count = min(args.batch, level - created)
                with db.transaction() as session:
                    ids = [
                        str(
                            jobs.create_job(
                                session=session,
                                settings=settings,
                                catalog=catalog.BUILTIN,
                                provider_name="simulator",
                                account_id=account_ids[(created + i) % len(account_ids)],
                                request=JobCreate.model_validate(BODY),
                                idempotency_key=uuid.uuid4().hex,
                            ).job.id
                        )
                        for i in range(count)
                    ]
                for job_id in ids:  # after the commit, as the API does
                    celery.send_task(SUBMIT_JOB, args=(job_id,))
                created += count
            pg, rd = pg_sizes(plain_url), redis_sizes(client, queue)
            assert rd["length"] == created, rd
            delta = {t: pg[t]["total"] - pg_base[t]["total"] for t in TABLES}
            rows.append(
                [
                    f"{created:,}",
                    *(f"{delta[t] / created:,.0f}" for t in TABLES),
                    f"{sum(delta.values()) / created:,.0f}",
                    f"{sum(delta.values()) / 1024**2:,.2f}",
                    f"{(rd['queue'] - redis_base['queue']) / created:,.0f}",
                    f"{rd['message']:,}",
                    f"{(rd['used_memory'] - redis_base['used_memory']) / created:,.0f}",
                ]
            )
            detail = (created, pg)

    print(
        f"\nbytes per in-flight job (delta from the empty database and queue, / jobs); "
        f"{harness.load_average()}"
    )
    harness.print_table(
        [
            "jobs in flight",
            "PG jobs",
            "PG ledger_entries",
            "PG idempotency_keys",
            "PG total/job",
            "PG total MiB",
            "Redis queue/job",
            "message bytes",
            "Redis used_memory/job",
        ],
        rows,
    )
    if detail is not None:
        created, pg = detail
        print(f"\nPostgreSQL at {created:,} jobs: where the bytes are (per job)")
        table_rows = []
        for table in TABLES:
            base = pg_base[table]
            table_rows.append(
                [
                    table,
                    f"{(pg[table]['table'] - base['table']) / created:,.0f}",
                    f"{(pg[table]['indexes'] - base['indexes']) / created:,.0f}",
                    ", ".join(
                        f"{name[6:]} {(size - base.get(name, 0)) / created:,.0f}"
                        for name, size in sorted(pg[table].items())
                        if name.startswith("index ")
                    ),
                ]
            )
        harness.print_table(["table", "heap+TOAST", "indexes", "each index"], table_rows)
    print(f"\nbench ran {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
