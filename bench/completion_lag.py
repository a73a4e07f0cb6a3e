"""How soon after a render ends its job is completed, by polling alone (no webhooks).

    .venv/bin/python -m bench.completion_lag [--jobs 20] [--render-seconds 2]

The Procfile's worker (concurrency 4) and beat (the dispatcher) on a scratch database and
a Redis queue of their own, the simulator provider, production poll settings. Jobs run
one after another, all with one prompt (the simulator renders its MP4 once, in a warm-up
job; real providers hand over a finished file). Each job's render starts when the
simulator takes the request (`started_at`, written as that call returns) and ends
`--render-seconds` later; the lag is from then to `completed_at`: the wait for the poll
that finds the render done, then settlement and ingestion (copy, probe, poster).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import psutil
import psycopg

from bench import harness
from services import processes
from services.worker.celery_app import SUBMIT_JOB, make_celery
from shared import accounts, catalog
from shared.config import load_settings
from shared.db import Database
from shared.jobs import service as jobs
from shared.jobs.schemas import JobCreate
from tests.stack import running_worker, scratch_database, started

REDIS_DB = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--render-seconds", type=float, default=2)
    args = parser.parse_args()
    harness.print_machine()
    body = {
        "model": harness.MODEL,
        "input": {"prompt": f"completion lag [sim latency={args.render_seconds:g}]"},
    }
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lag-")))
        database_url = stack.enter_context(scratch_database("bench_lag"))
        queue = harness.unique_queue("lag")
        broker = harness.redis_url(REDIS_DB)
        stack.callback(harness.delete_redis_keys, broker, queue, f"{queue}.completions")
        env = {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker,
            "CELERY_QUEUE": queue,
            "NAIVE_DATA_DIR": str(work / "data"),
            "NAIVE_PROVIDER": "simulator",
            "SECRET_KEY": "bench",
        }
        settings = load_settings(env)
        settings.ensure_local_dirs()
        db = Database(database_url)
        stack.callback(db.dispose)
        with db.transaction() as session:
            account_id = accounts.create_account(
                session=session, name="bench", credits=Decimal(1_000_000)
            ).account_id
        beat = processes.python_m(processes.beat(schedule=work / "beat-schedule"))
        stack.enter_context(started(beat, work / "beat.log", env=env, ready=lambda: True))
        stack.enter_context(running_worker(env, work / "worker.log", 4))
        celery = make_celery(settings)
        plain = database_url.replace("postgresql+psycopg://", "postgresql://")
        conn = stack.enter_context(psycopg.connect(plain, autocommit=True))
        lags, totals, polls = [], [], []
        for n in range(args.jobs + 1):  # the first one renders the video: not counted
            with db.transaction() as session:
                job_id = jobs.create_job(
                    session=session,
                    settings=settings,
                    catalog=catalog.BUILTIN,
                    provider_name="simulator",
                    account_id=account_id,
                    request=JobCreate.model_validate(body),
                    idempotency_key=None,
                ).job.id
            celery.send_task(SUBMIT_JOB, args=(str(job_id),))
            deadline = time.monotonic() + 120
            while True:
                row = conn.execute(
                    "SELECT status, extract(epoch FROM completed_at - started_at), "
                    "extract(epoch FROM completed_at - created_at), poll_count "
                    "FROM jobs WHERE id = %s",
                    (job_id,),
                ).fetchone()
                if row is not None and row[0] in ("completed", "failed", "cancelled"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job {job_id} did not finish")
                time.sleep(0.05)
            if row[0] != "completed":
                raise SystemExit(f"job {job_id} ended {row[0]}")
            if n:
                lags.append(float(row[1]) - args.render_seconds)
                totals.append(float(row[2]))
                polls.append(int(row[3]))
    print(
        f"\n{args.jobs} jobs one after another, {args.render_seconds:g} s simulated render, "
        f"polling only; load average {psutil.getloadavg()[0]:.2f}"
    )
    harness.print_table(
        [
            "render s",
            "lag after the render, median s",
            "max s",
            "submit → completed, median s",
            "polls/job",
        ],
        [
            [
                f"{args.render_seconds:g}",
                f"{statistics.median(lags):.2f}",
                f"{max(lags):.2f}",
                f"{statistics.median(totals):.2f}",
                f"{statistics.mean(polls):.2f}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
