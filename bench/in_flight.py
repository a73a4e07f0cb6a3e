"""Renders in flight held by one worker: polls due vs done, poll lateness, CPU and memory.

    .venv/bin/python -m bench.in_flight [--levels 1000,5000,10000] [--window 30]
        [--warm-polls 2]

For each level N: a scratch database and a Redis queue of their own, one worker
(`--concurrency 4`, the Procfile's command line), the Procfile's beat (its dispatcher
sends the parked polls and re-sends what is overdue), production poll settings
(POLL_MAX_SECONDS=15, POLL_HORIZON_SECONDS=2, POLL_BATCH_SIZE=100), and N jobs whose
simulated render never ends (`[sim stall]`), so each is polled at the cap for as long as
the bench runs: the steady state of N long renders in flight. After a warm-up (every job
submitted and polled at least `--warm-polls` times: 2 measures while the backoff still
grows, 10 at the 15 s cap), it measures over `--window` seconds: polls done per second
against polls due (done, plus the growth of the overdue set), how late the due polls are
(now − `due_at` of the overdue jobs, sampled every second: p50 and p99), the worker's
CPU per poll (its process tree, from /proc via psutil; the dispatcher's tick runs in the
worker too, so it counts) and that of the scratch database's PostgreSQL backends, poll
messages per poll (`poll_job` and `poll_batch` tasks the worker received), the worker's
memory, Redis's (the whole server's, shared with other runs, and this run's keys alone),
and the load average at the window's start and end.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

import psutil
import psycopg
import redis

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
BODY = {"model": harness.MODEL, "input": {"prompt": "in flight [sim stall latency=1]"}}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


POLL_RECEIVED = re.compile(r"Task naive\.poll_(?:job|batch)\[[^\]]+\] received")


def _poll_messages(log: Path) -> int:
    """Poll tasks (single or batch) the worker has received so far, from its log."""
    return len(POLL_RECEIVED.findall(log.read_text(errors="replace")))


def run_level(
    n: int, window: float, work: Path, profile: bool, warm_polls: int
) -> dict[str, float]:
    queue = harness.unique_queue("in-flight")
    broker = harness.redis_url(REDIS_DB)
    with ExitStack() as stack:
        # Last, once the worker and beat have stopped (a worker that stops puts the
        # countdowns it held back on the queue), and whether the level ends or fails.
        stack.callback(harness.delete_redis_keys, broker, queue)
        database_url = stack.enter_context(scratch_database("bench_in_flight"))
        env = {
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": broker,
            "CELERY_QUEUE": queue,
            "NAIVE_DATA_DIR": str(work / f"data-{n}"),
            "NAIVE_PROVIDER": "simulator",
            "SECRET_KEY": "bench",
            "JOB_DEADLINE_SECONDS": "86400",
            "DISPATCH_GRACE_SECONDS": os.environ.get("DISPATCH_GRACE_SECONDS", "1"),
            "POLL_BATCH_SIZE": os.environ.get("POLL_BATCH_SIZE", "100"),
        }
        settings = load_settings(env)
        settings.ensure_local_dirs()
        db = Database(database_url)
        with db.transaction() as session:
            account_id = accounts.create_account(
                session=session, name="bench", credits=Decimal(10_000_000)
            ).account_id
        ids: list[str] = []
        request = JobCreate.model_validate(BODY)
        while len(ids) < n:
            with db.transaction() as session:
                for _ in range(min(500, n - len(ids))):
                    created = jobs.create_job(
                        session=session,
                        settings=settings,
                        catalog=catalog.BUILTIN,
                        provider_name="simulator",
                        account_id=account_id,
                        request=request,
                        idempotency_key=None,
                    )
                    ids.append(str(created.job.id))
        beat = processes.python_m(processes.beat(schedule=work / f"beat-{n}"))
        stack.enter_context(started(beat, work / f"beat-{n}.log", env=env, ready=lambda: True))
        app = processes.CELERY_APP
        if profile:
            app, env["BENCH_PROFILE_DIR"] = "bench.worker_profile", str(work / f"profile-{n}")
            Path(env["BENCH_PROFILE_DIR"]).mkdir()
        worker_log = work / f"worker-{n}.log"
        worker = stack.enter_context(running_worker(env, worker_log, 4, app=app))
        celery = make_celery(settings)
        for job_id in ids:
            celery.send_task(SUBMIT_JOB, args=(job_id,))
        plain = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(plain, autocommit=True) as conn:

            def warm() -> int:
                row = conn.execute(
                    "SELECT count(*) FROM jobs WHERE poll_count >= %s", (warm_polls,)
                ).fetchone()
                return int(row[0]) if row else 0

            deadline = time.monotonic() + 900 + 60 * warm_polls
            while warm() < n:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{n}: warm-up did not finish")
                time.sleep(1)

            def polls() -> int:
                row = conn.execute("SELECT sum(poll_count) FROM jobs").fetchone()
                return int(row[0]) if row and row[0] is not None else 0

            def lateness() -> list[float]:
                rows = conn.execute(
                    "SELECT extract(epoch FROM now() - due_at) FROM jobs WHERE due_at < now()"
                ).fetchall()
                return [float(value) for (value,) in rows]

            load_before = float(psutil.getloadavg()[0])
            main, cpu = harness.cpu_seconds_of(worker.pid), harness.cpu_seconds(worker.pid)
            pg = harness.postgres_cpu(database_url)
            messages = _poll_messages(worker_log)
            done, overdue = polls(), len(lateness())
            late: list[float] = []
            started_at = time.monotonic()
            while time.monotonic() - started_at < window:
                late += lateness()
                time.sleep(1)
            elapsed = time.monotonic() - started_at
            done = polls() - done
            # Every poll that fell due in the window was done in it or is still overdue.
            due = done + len(lateness()) - overdue
            cpu = harness.cpu_seconds(worker.pid) - cpu
            main = harness.cpu_seconds_of(worker.pid) - main
            pg_cpu = harness.cpu_delta(pg, harness.postgres_cpu(database_url))
            messages = _poll_messages(worker_log) - messages
            total_polls = polls()
        rss = sum(p.memory_info().rss for p in harness.process_tree(worker.pid)) / 2**20
        client = redis.Redis.from_url(broker)
        redis_mb = client.info("memory")["used_memory"] / 2**20  # the whole server's
        # This run's keys alone: its queues, and kombu's unacked messages (what the worker
        # holds: countdowns, tasks under way) and their index in the bench's database.
        keys = [*client.scan_iter(match=f"*{queue}*"), "unacked", "unacked_index"]
        keys_kib = sum(client.memory_usage(key) or 0 for key in keys) / 2**10
        db.dispose()
    if profile:
        for kind in ("main", "child"):
            harness.summarize_cprofile(Path(env["BENCH_PROFILE_DIR"]), kind, total_polls)
    return {
        "n": n,
        "due_per_s": due / elapsed,
        "done_per_s": done / elapsed,
        "late_p50": _percentile(late, 0.5),
        "late_p99": _percentile(late, 0.99),
        "cpu_ms_per_poll": 1000 * cpu / done if done else 0.0,
        "main_ms_per_poll": 1000 * main / done if done else 0.0,
        "children_ms_per_poll": 1000 * (cpu - main) / done if done else 0.0,
        "postgres_ms_per_poll": 1000 * pg_cpu / done if done else 0.0,
        "messages_per_poll": messages / done if done else 0.0,
        "polls": done,
        "worker_rss_mb": rss,
        "redis_mb": redis_mb,
        "redis_keys_kib": keys_kib,
        "load_before": load_before,
        "load": float(psutil.getloadavg()[0]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--levels", default="1000,5000,10000")
    parser.add_argument("--window", type=float, default=30)
    parser.add_argument(
        "--warm-polls",
        type=int,
        default=2,
        help="polls every job has had before the window opens (10: the backoff is at its cap)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run the worker under cProfile (bench/worker_profile.py) and print where "
        "its main process and its children spend their CPU per poll (cProfile slows both)",
    )
    args = parser.parse_args()
    harness.print_machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-in-flight-") as folder:
        for n in (int(level) for level in args.levels.split(",")):
            result = run_level(n, args.window, Path(folder), args.profile, args.warm_polls)
            rows.append(
                [
                    f"{n:,}",
                    f"{result['due_per_s']:.0f}",
                    f"{result['done_per_s']:.0f}",
                    f"{result['late_p50']:.2f}",
                    f"{result['late_p99']:.2f}",
                    f"{result['cpu_ms_per_poll']:.2f}",
                    f"{result['main_ms_per_poll']:.2f}",
                    f"{result['children_ms_per_poll']:.2f}",
                    f"{result['postgres_ms_per_poll']:.2f}",
                    f"{result['messages_per_poll']:.3f}",
                    f"{result['worker_rss_mb']:.0f}",
                    f"{result['redis_mb']:.1f}",
                    f"{result['redis_keys_kib']:.0f}",
                    f"{result['load_before']:.1f}–{result['load']:.1f}",
                ]
            )
            print(f"level {n}: {result}", flush=True)
    harness.print_table(
        [
            "renders in flight",
            "polls due/s",
            "polls done/s",
            "late p50 s",
            "late p99 s",
            "worker CPU ms/poll",
            "main process",
            "pool children",
            "PostgreSQL ms/poll",
            "poll messages/poll",
            "worker RSS MiB",
            "Redis MiB",
            "its keys KiB",
            "load",
        ],
        rows,
    )


if __name__ == "__main__":
    main()
