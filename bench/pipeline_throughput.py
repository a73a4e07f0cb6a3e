"""Jobs per second through the whole worker pipeline, beside a fair floor and plain Celery.

    python -m bench.pipeline_throughput [--jobs 200] [--concurrency 2,4] [--repeat 3]
                                        [--poll-initial 2] [--steps] [--profile]

Self-contained. For each worker concurrency K (comma-separated list), on this machine:
  * naive: a scratch PostgreSQL database, Redis db 7 with a queue of this run, the real
    worker (`celery -A services.worker.app worker --concurrency K`, the Procfile's flags)
    and the simulator with an instant render (`[sim latency=0]`, one prompt, so after
    the warm-up every result is the cached file). N jobs are written with their credit
    holds (the domain's `create_job`, as the API does), then their submit messages are
    sent at once; the clock runs from the first message to the last job `completed`
    (submit → poll → settle_credits → ingest_media: the video copied, probed with PyAV,
    its poster written, its media asset recorded).
  * fair floor: `bench/fair_floor.py` on the same database and the same kind of jobs:
    the same four tasks, countdowns, provider calls and ingest, the same guarantees (a
    claim before each step acts, every visible change's event in its transaction), with
    the least work: 7 transactions per job, hand-written SQL on psycopg, nothing else.
  * plain (context): `bench/plain_chain.py`, a Celery app with the same delivery settings
    whose job is a chain of four no-op tasks, N chains sent at once, the same K.

Reports jobs/s over the whole run (first message to last completion), when half the
jobs were done, the CPU the worker processes used per job (from /proc: the figure least
disturbed by other test runs on this machine), and each row against the fair floor
(medians of `--repeat` interleaved runs: this machine's two cores are shared). The
first poll of each job waits the step after an instant render (0.2–0.25 s) after its
submit; with N jobs sent at once that wait overlaps other jobs' work.
K worker processes share this machine's two cores with PostgreSQL, Redis and this client.

`--steps` adds the worker CPU per job of each step, naive beside the floor: each pool
child's thread CPU time inside each task (bench/step_cpu.py), the warm-up left out. It
shows where the difference between the two pipelines lies without cProfile, which slows
small Python calls far more than C and so misplaces it.
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import tempfile
import time
import uuid
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench import harness, step_cpu
from services.processes import CELERY_APP
from services.worker.celery_app import (
    INGEST_MEDIA,
    POLL_BATCH,
    POLL_JOB,
    SETTLE_CREDITS,
    SUBMIT_JOB,
    make_celery,
)
from shared import accounts, catalog
from shared.config import load_settings
from shared.db import Database
from shared.jobs import service as jobs
from shared.jobs.schemas import JobCreate
from tests.stack import running_worker

REDIS_DB = 7
PROMPT = "bench pipeline [sim latency=0]"  # one prompt: one render, cached for every job
BODY = {"model": harness.MODEL, "input": {"prompt": PROMPT, "duration": "5"}}


def _rates(t0: float, finished: list[float]) -> tuple[float, float, float]:
    """Makespan (first message to last completion), jobs/s over it, and the median time
    from the first message to a job's completion."""
    makespan = max(finished) - t0
    return makespan, len(finished) / makespan, statistics.median(finished) - t0


def run_naive(
    database_url: str,
    work: Path,
    concurrency: int,
    n: int,
    args: argparse.Namespace,
    *,
    floor: bool = False,
) -> dict[str, Any]:
    """The product's worker, or (`floor`) bench/fair_floor.py's, on the same kind of jobs."""
    app, submit = ("bench.fair_floor", "floor.submit") if floor else (CELERY_APP, SUBMIT_JOB)
    name = "floor" if floor else "naive"
    profile = work / f"profile-{name}-{concurrency}-{uuid.uuid4().hex[:8]}"  # one per run
    profiled = app
    if args.profile or args.steps:
        app = "bench.worker_profile" if args.profile else "bench.step_cpu"
        profile.mkdir()
    queue = harness.unique_queue(name)
    broker = harness.redis_url(REDIS_DB)
    env = {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_QUEUE": queue,
        "NAIVE_DATA_DIR": str(work / "data"),
        "NAIVE_PROVIDER": "simulator",
        "PROMETHEUS_MULTIPROC_DIR": str(work / f"prometheus-{concurrency}"),
        "POLL_INITIAL_SECONDS": str(args.poll_initial),
        "SECRET_KEY": "bench",
        "BENCH_PROFILE_DIR": str(profile),
        "BENCH_PROFILED_APP": profiled,
    }
    settings = load_settings(env)
    settings.ensure_local_dirs()
    celery = make_celery(settings)
    db = Database(database_url)
    plain_url = database_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with db.transaction() as session:
            account_ids = [
                accounts.create_account(
                    session=session, name=f"bench-{i}", credits=Decimal(1_000_000)
                ).account_id
                for i in range(8)
            ]

        def create(count: int) -> list[str]:
            ids = []
            with db.transaction() as session:
                for i in range(count):
                    ids.append(
                        str(
                            jobs.create_job(
                                session=session,
                                settings=settings,
                                catalog=catalog.BUILTIN,
                                provider_name="simulator",
                                account_id=account_ids[i % len(account_ids)],
                                request=JobCreate.model_validate(BODY),
                                idempotency_key=None,
                            ).job.id
                        )
                    )
            return ids

        def wait(ids: list[str], timeout: float) -> list[tuple]:
            deadline = time.monotonic() + timeout
            with psycopg.connect(plain_url, autocommit=True) as conn:
                while True:
                    rows = conn.execute(
                        "SELECT status, extract(epoch FROM completed_at), poll_count "
                        "FROM jobs WHERE id = ANY(%s::uuid[]) "
                        "AND status IN ('completed', 'failed', 'cancelled')",
                        (ids,),
                    ).fetchall()
                    if len(rows) == len(ids):
                        return rows
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name}: {len(rows)}/{len(ids)} jobs finished in time")
                    time.sleep(0.2)

        log = work / f"{name}-worker-{concurrency}.log"
        with running_worker(env, log, concurrency, app=app) as worker:
            warm = create(max(concurrency, 4))  # renders the one video, opens connections
            for job_id in warm:
                celery.send_task(submit, args=(job_id,))
            wait(warm, 120)
            warm_steps = _step_cpu(profile, after=len(warm)) if args.steps else {}

            ids = create(n)
            cpu, pg = harness.cpu_seconds(worker.pid), harness.postgres_cpu(database_url)
            t0 = time.time()
            for job_id in ids:
                celery.send_task(submit, args=(job_id,))
            sent = time.time() - t0
            rows = wait(ids, args.timeout)
            cpu = harness.cpu_seconds(worker.pid) - cpu
            pg_cpu = harness.cpu_delta(pg, harness.postgres_cpu(database_url))
        steps = {}
        if args.steps:  # read once the worker stopped: every task's totals are written
            ended = _step_cpu(profile, after=len(warm) + n)
            steps = {step: (ended[step] - warm_steps.get(step, 0.0)) * 1000 / n for step in ended}
        if args.profile:
            print(f"\n{name} worker, concurrency {concurrency}:")
            for kind in ("main", "child"):
                harness.summarize_cprofile(profile, kind, n + len(warm))
        failed = sum(1 for status, _, _ in rows if status != "completed")
        makespan, rate, median = _rates(t0, [float(done) for _, done, _ in rows if done])
        with psycopg.connect(plain_url) as conn:
            assets = conn.execute(
                "SELECT count(*) FROM media_assets WHERE source_job_id = ANY(%s::uuid[])", (ids,)
            ).fetchone()[0]
        return {
            "makespan": makespan,
            "rate": rate,
            "median": median,
            "cpu_ms": cpu * 1000 / n,
            "pg_ms": pg_cpu * 1000 / n,
            "sent": sent,
            "failed": failed,
            "assets": assets,
            "polls": sum(polls for _, _, polls in rows) / len(rows),
            "steps": steps,
        }
    finally:
        db.dispose()
        harness.delete_redis_keys(broker, queue)


# Each pipeline's tasks by the step of the job they carry out.
STEP_OF_TASK = {
    SUBMIT_JOB: "submit",
    POLL_JOB: "poll",
    POLL_BATCH: "poll",
    SETTLE_CREDITS: "settle",
    INGEST_MEDIA: "ingest",
    **{f"floor.{step}": step for step in ("submit", "poll", "settle", "ingest")},
}
STEPS = ("submit", "poll", "settle", "ingest")


def _step_cpu(folder: Path, *, after: int, timeout: float = 30) -> dict[str, float]:
    """The CPU seconds the worker's tasks spent in each step so far (bench/step_cpu.py),
    once `after` ingests have written their totals (a task's totals are written just after
    the commit that ends its job)."""
    deadline = time.monotonic() + timeout
    while True:
        totals = step_cpu.read_totals(folder)
        steps: dict[str, float] = {}
        for task, (seconds, _) in totals.items():
            steps[STEP_OF_TASK[task]] = steps.get(STEP_OF_TASK[task], 0.0) + seconds
        ingests = sum(runs for task, (_, runs) in totals.items() if STEP_OF_TASK[task] == "ingest")
        if ingests >= after or time.monotonic() > deadline:
            return steps
        time.sleep(0.05)


def run_plain(work: Path, concurrency: int, n: int, timeout: float) -> dict[str, float]:
    queue = harness.unique_queue("plain")
    done_key = f"{queue}-done"
    broker = harness.redis_url(REDIS_DB)
    env = {"CELERY_BROKER_URL": broker, "CELERY_QUEUE": queue, "BENCH_DONE_KEY": done_key}
    plain = importlib.import_module("bench.plain_chain")
    plain.app.conf.update(broker_url=broker, task_default_queue=queue)
    client = redis.Redis.from_url(broker)
    log = work / f"plain-worker-{concurrency}.log"
    try:
        with running_worker(env, log, concurrency, app="bench.plain_chain") as worker:

            def wait(count: int) -> list[float]:
                deadline = time.monotonic() + timeout
                while client.llen(done_key) < count:
                    if time.monotonic() > deadline:
                        raise SystemExit(f"plain: {client.llen(done_key)}/{count} chains done")
                    time.sleep(0.05)
                return [float(x) for x in client.lrange(done_key, 0, -1)]

            warm = max(concurrency, 4)
            for _ in range(warm):
                plain.job(uuid.uuid4().hex).apply_async()
            wait(warm)
            client.delete(done_key)

            cpu = harness.cpu_seconds(worker.pid)
            t0 = time.time()
            for _ in range(n):
                plain.job(uuid.uuid4().hex).apply_async()
            sent = time.time() - t0
            finished = wait(n)
            cpu = harness.cpu_seconds(worker.pid) - cpu
        makespan, rate, median = _rates(t0, finished)
        return {
            "makespan": makespan,
            "rate": rate,
            "median": median,
            "cpu_ms": cpu * 1000 / n,
            "sent": sent,
        }
    finally:
        client.close()
        harness.delete_redis_keys(broker, queue, done_key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--concurrency", default="2,4", help="worker processes, e.g. 2,4")
    parser.add_argument(
        "--poll-initial", type=float, default=2.0, help="POLL_INITIAL_SECONDS (production: 2)"
    )
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="runs of each pipeline at each K, interleaved; the table shows medians",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="and the worker CPU per job of each step (submit, poll, settle, ingest) of "
        "both pipelines, from each pool child's thread CPU time (bench/step_cpu.py)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="run each worker under cProfile (bench/worker_profile.py) and print where "
        "its processes spend their CPU per job (warm-up included; cProfile slows it)",
    )
    args = parser.parse_args()
    levels = [int(k) for k in args.concurrency.split(",")]
    started = time.monotonic()
    harness.print_machine()

    rows: list[list[object]] = []
    steps: list[list[object]] = []
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-")))
        database_url = stack.enter_context(harness.scratch_database("naive_bench"))
        for k in levels:
            runs: dict[str, list[dict[str, Any]]] = {"naive": [], "floor": [], "plain": []}
            for _ in range(args.repeat):
                runs["naive"].append(run_naive(database_url, work, k, args.jobs, args))
                runs["floor"].append(run_naive(database_url, work, k, args.jobs, args, floor=True))
                runs["plain"].append(run_plain(work, k, args.jobs, args.timeout))
            for result in runs["naive"] + runs["floor"]:
                if result["failed"] or result["assets"] != args.jobs:
                    print(f"warning: {result['failed']} failed, {result['assets']} assets")
            floor = runs["floor"]
            rows.append(_row(k, "naive pipeline", runs["naive"], floor))
            rows.append(_row(k, "fair floor (7 transactions)", floor, floor))
            rows.append(_row(k, "plain 4-task chain (context)", runs["plain"], floor))
            if args.steps:
                for step in STEPS:
                    mine, least = (
                        statistics.median(run["steps"].get(step, 0.0) for run in runs[name])
                        for name in ("naive", "floor")
                    )
                    steps.append([k, step, f"{mine:.2f}", f"{least:.2f}", f"{mine - least:+.2f}"])
            naive = runs["naive"][-1]
            print(
                f"K={k}: naive sent {args.jobs} submit messages in {naive['sent']:.2f} s, "
                f"{naive['polls']:.2f} polls/job, {naive['assets']} media assets"
            )

    print(
        f"\n{args.jobs} jobs, instant provider, POLL_INITIAL_SECONDS={args.poll_initial:g}; "
        f"medians of {args.repeat} interleaved runs (ratios: of each run against the floor's "
        f"run beside it); {harness.load_average()}"
    )
    harness.print_table(
        [
            "worker procs",
            "pipeline",
            "first msg → last done s",
            "half done s",
            "jobs/s",
            "worker CPU ms/job",
            "PostgreSQL CPU ms/job",
            "jobs/s vs fair floor",
            "CPU/job vs fair floor",
        ],
        rows,
    )
    if args.steps:
        print("\nworker CPU ms per job in each step (pool children's thread time; medians)")
        harness.print_table(["worker procs", "step", "naive", "fair floor", "difference"], steps)
    print(f"\nbench ran {time.monotonic() - started:.0f} s")


def _row(
    k: int, name: str, runs: list[dict[str, Any]], floors: list[dict[str, Any]]
) -> list[object]:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    def ratio(key: str) -> float:
        return statistics.median(
            run[key] / floor[key] for run, floor in zip(runs, floors, strict=True)
        )

    return [
        k,
        name,
        f"{median('makespan'):.2f}",
        f"{median('median'):.2f}",
        f"{median('rate'):.1f}",
        f"{median('cpu_ms'):.1f}",
        f"{median('pg_ms'):.1f}" if "pg_ms" in runs[0] else "-",
        f"{ratio('rate'):.3f}",
        f"{ratio('cpu_ms'):.2f}×",
    ]


if __name__ == "__main__":
    main()
