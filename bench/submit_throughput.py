"""Submit throughput and CPU of POST /v1/video/generate, beside its durable floor.

    python -m bench.submit_throughput [--concurrency 1,8] [--seconds 4] [--repeat 3]
                                      [--accounts 32] [--client wrk|httpx] [--workers 2]

Self-contained. Starts, on this machine and in the same run:
  * the real API under gunicorn with the Procfile's command line (`--config
    python:services.api.gunicorn_conf`, `--workers ${WEB_CONCURRENCY:-2}`, access log on),
    on a scratch PostgreSQL database, Redis as broker and rate-limit store
    (RATE_LIMIT high so nothing is refused), CELERY_QUEUE a queue no worker reads, so
    every submit is a real job with its credit hold and its message, and nothing renders;
  * `bench/submit_floor.py`, the durable-submit floor, under the same gunicorn command
    line, database and broker: the hashed key looked up, one transaction that locks the
    account and inserts the job, its `job.queued` event and its hold (one statement, as
    the product writes them), one LPUSH, nothing else; and the same floor with the three
    inserts sent apart (`FLOOR_WRITES=apart`: the floor issue 10 first set), a context row;
  * `bench/bare_flask.py` (POST /echo: parse JSON, answer small JSON) under the same
    gunicorn command line: Flask + gunicorn alone, a context row.

All are loaded by the same client (`wrk` when installed, else httpx in threads), closed
loop, at each concurrency. The API is loaded twice: every request under ONE account
(submits of one account serialize on its row lock by design) and spread over N accounts,
as the floor is. Each cell gets fresh accounts, so no cell pays for another's ledger rows.
Cells run `--repeat` times, interleaved, and the table shows medians: this machine's two
cores are shared with other test runs. CPU per request is that of the gunicorn processes
plus the PostgreSQL backends of the scratch database (from /proc), the figure least
disturbed by them; the ratios compare the API over N accounts with the floor.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from bench import harness

PATH = "/v1/video/generate"
BODY = json.dumps(
    {"model": harness.MODEL, "input": {"prompt": "bench [sim latency=1]", "duration": "5"}}
)
REDIS_DB = 8


def _count_jobs(database_url: str) -> int:
    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        return conn.execute("SELECT count(*) FROM jobs").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--seconds", type=float, default=4, help="load per cell and run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (medians shown)")
    parser.add_argument("--accounts", type=int, default=32, help="N for the spread run")
    parser.add_argument(
        "--client", choices=("wrk", "httpx"), default="wrk" if harness.wrk_available() else "httpx"
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    started = time.monotonic()
    harness.print_machine()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-submit-")))
        database_url, env = harness.sink_env(stack, "sink", work, REDIS_DB)
        api = stack.enter_context(
            harness.gunicorn("services.api.wsgi:app", env, work / "api.log", workers=args.workers)
        )
        floor = stack.enter_context(
            harness.gunicorn(
                "bench.submit_floor:app", env, work / "floor.log", workers=args.workers
            )
        )
        apart = stack.enter_context(
            harness.gunicorn(
                "bench.submit_floor:app",
                {**env, "FLOOR_WRITES": "apart"},
                work / "floor-apart.log",
                workers=args.workers,
            )
        )
        bare = stack.enter_context(
            harness.gunicorn("bench.bare_flask:app", env, work / "bare.log", workers=args.workers)
        )
        # Warm them all (imports, first connections, prepared statements) before timing.
        warm = harness.create_accounts(database_url, 1)
        for server, path in ((api, PATH), (floor, PATH), (apart, PATH), (bare, "/echo")):
            harness.load(args.client, server.url, path, BODY, warm, 2, 1)

        cells = [
            ("bare Flask", bare, "/echo", 0),
            ("durable floor", floor, PATH, args.accounts),
            ("floor, inserts apart", apart, PATH, args.accounts),
            ("API submit", api, PATH, 1),
            ("API submit", api, PATH, args.accounts),
        ]
        runs: dict[tuple[int, int], list[Run]] = {}
        accepted = 0
        for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits every cell
            for level in levels:
                for i, (_, server, path, spread) in enumerate(cells):
                    # fresh accounts: no cell pays for another's ledger rows
                    keys = harness.create_accounts(database_url, spread) if spread else warm
                    result = _measure(args, server, path, keys, level, database_url)
                    if path == PATH:
                        accepted += result[0].requests - result[0].failures
                    runs.setdefault((level, i), []).append(result)
        rows = []
        for level in levels:
            floor_rps, floor_cpu = _medians(runs[(level, 1)])
            for i, (app, _, _, spread) in enumerate(cells):
                rows.append(_row(level, app, spread, runs[(level, i)], floor_rps, floor_cpu))

        jobs = _count_jobs(database_url)

    print(
        f"\nPOST {PATH} (the API, and its durable floor) vs POST /echo, gunicorn "
        f"workers={args.workers}, client={args.client}, {args.seconds:g} s per cell, median "
        f"of {args.repeat} runs; {harness.load_average()}"
    )
    harness.print_table(
        [
            "concurrency",
            "app",
            "accounts",
            "req/s",
            "req/s range",
            "p50 ms",
            "p99 ms",
            "errors",
            "gunicorn CPU ms/req",
            "PostgreSQL CPU ms/req",
            "CPU ms/req",
            "req/s vs floor",
            "CPU vs floor",
        ],
        rows,
    )
    print(f"\njobs in the database after the run: {jobs} (incl. warm-up); accepted: {accepted}")
    print(f"bench ran {time.monotonic() - started:.0f} s")


Run = tuple[harness.LoadResult, float, float]  # the load, gunicorn and PostgreSQL CPU ms/req


def _measure(
    args: argparse.Namespace,
    server: harness.Server,
    path: str,
    keys: list[str],
    level: int,
    database_url: str,
) -> Run:
    """Load `server`; the result, its processes' and PostgreSQL's CPU ms per request."""
    cpu, pg = server.cpu_seconds(), harness.postgres_cpu(database_url)
    result = harness.load(args.client, server.url, path, BODY, keys, level, args.seconds)
    cpu = server.cpu_seconds() - cpu
    pg_cpu = harness.cpu_delta(pg, harness.postgres_cpu(database_url))
    n = max(1, result.requests)
    return result, cpu * 1000 / n, pg_cpu * 1000 / n


def _medians(runs: list[Run]) -> tuple[float, float]:
    """Median req/s and median CPU ms/req (gunicorn + PostgreSQL) over the repeats."""
    return (
        statistics.median(r.rps for r, _, _ in runs),
        statistics.median(cpu + pg for _, cpu, pg in runs),
    )


def _row(
    level: int,
    app: str,
    spread: int,
    runs: list[Run],
    floor_rps: float,
    floor_cpu: float,
) -> list[object]:
    """Medians over the repeats; req/s also as its range; ratios to the floor's medians."""
    rps = [r.rps for r, _, _ in runs]
    median, cpu = _medians(runs)
    return [
        level,
        app,
        spread or "-",
        f"{median:.0f}",
        f"{min(rps):.0f}–{max(rps):.0f}",
        f"{statistics.median(r.p50_ms for r, _, _ in runs):.1f}",
        f"{statistics.median(r.p99_ms for r, _, _ in runs):.1f}",
        sum(r.failures for r, _, _ in runs),
        f"{statistics.median(cpu for _, cpu, _ in runs):.2f}",
        f"{statistics.median(pg for _, _, pg in runs):.2f}" if spread else "-",
        f"{cpu:.2f}",
        f"{median / floor_rps:.2f}" if floor_rps else "-",
        f"{cpu / floor_cpu:.2f}" if floor_cpu else "-",
    ]


if __name__ == "__main__":
    main()
