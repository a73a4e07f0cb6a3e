"""Submit throughput and latency of POST /v1/video/generate, beside a bare Flask floor.

    python -m bench.submit_throughput [--concurrency 1,8,32] [--seconds 4] [--repeat 3]
                                      [--accounts 32] [--client wrk|httpx] [--workers 2]

Self-contained. Starts, on this machine and in the same run:
  * the real API under gunicorn with the Procfile's command line (`--config
    python:services.api.gunicorn_conf`, `--workers ${WEB_CONCURRENCY:-2}`, access log on),
    on a scratch PostgreSQL database, Redis as broker and rate-limit store
    (RATE_LIMIT high so nothing is refused), CELERY_QUEUE a queue no worker reads, so
    every submit is a real job with its credit hold and its message, and nothing renders;
  * `bench/bare_flask.py` (POST /echo: parse JSON, answer small JSON) under the same
    gunicorn command line: the floor of Flask + gunicorn on this machine.

Both are loaded by the same client (`wrk` when installed, else httpx in threads), closed
loop, at each concurrency. The API is loaded twice: every request under ONE account
(submits of one account serialize on its row lock by design) and spread over N accounts.
Each cell gets fresh accounts, so no cell pays for another's ledger rows. Cells run
`--repeat` times, interleaved, and the table shows medians: this machine's two cores are
shared with other test runs. The CPU the gunicorn processes used per request (from
/proc) is the figure least disturbed by them.
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
        bare = stack.enter_context(
            harness.gunicorn("bench.bare_flask:app", env, work / "bare.log", workers=args.workers)
        )
        # Warm both (imports, first connections, the JIT-free Python caches) before timing.
        warm = harness.create_accounts(database_url, 1)
        harness.load(args.client, api.url, PATH, BODY, warm, 2, 1)
        harness.load(args.client, bare.url, "/echo", BODY, warm, 2, 1)

        cells = [("bare Flask", 0), ("API submit", 1), ("API submit", args.accounts)]
        runs: dict[tuple[int, int], list[tuple[harness.LoadResult, float, float]]] = {}
        accepted = 0
        for _ in range(args.repeat):  # interleaved, so a noisy neighbour hits every cell
            for level in levels:
                for i, (_, spread) in enumerate(cells):
                    if spread == 0:
                        result = _measure(args, bare, "/echo", warm, level, database_url)
                    else:  # fresh accounts: no cell pays for another's ledger rows
                        keys = harness.create_accounts(database_url, spread)
                        result = _measure(args, api, PATH, keys, level, database_url)
                        accepted += result[0].requests - result[0].failures
                    runs.setdefault((level, i), []).append(result)
        rows = []
        for level in levels:
            bare_rps = statistics.median(r.rps for r, _, _ in runs[(level, 0)])
            for i, (app, spread) in enumerate(cells):
                rows.append(_row(level, app, spread, runs[(level, i)], bare_rps))

        jobs = _count_jobs(database_url)

    print(
        f"\nPOST {PATH} vs POST /echo, gunicorn sync workers={args.workers}, "
        f"client={args.client}, {args.seconds:g} s per cell, median of {args.repeat} runs; "
        f"{harness.load_average()}"
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
            "req/s vs bare",
        ],
        rows,
    )
    print(f"\njobs in the database after the run: {jobs} (incl. warm-up); accepted: {accepted}")
    print(f"bench ran {time.monotonic() - started:.0f} s")


def _measure(
    args: argparse.Namespace,
    server: harness.Server,
    path: str,
    keys: list[str],
    level: int,
    database_url: str,
) -> tuple[harness.LoadResult, float, float]:
    """Load `server`; the result, its processes' and PostgreSQL's CPU ms per request."""
    cpu, pg = server.cpu_seconds(), harness.postgres_cpu(database_url)
    result = harness.load(args.client, server.url, path, BODY, keys, level, args.seconds)
    cpu = server.cpu_seconds() - cpu
    pg_cpu = harness.cpu_delta(pg, harness.postgres_cpu(database_url))
    n = max(1, result.requests)
    return result, cpu * 1000 / n, pg_cpu * 1000 / n


def _row(
    level: int,
    app: str,
    spread: int,
    runs: list[tuple[harness.LoadResult, float, float]],
    bare_rps: float,
) -> list[object]:
    """Medians over the repeats; req/s also as its range."""
    rps = [r.rps for r, _, _ in runs]
    median = statistics.median(rps)
    return [
        level,
        app,
        spread or "-",
        f"{median:.0f}",
        f"{min(rps):.0f}–{max(rps):.0f}",
        f"{statistics.median(r.p50_ms for r, _, _ in runs):.1f}",
        f"{statistics.median(r.p99_ms for r, _, _ in runs):.1f}",
        sum(r.failures for r, _, _ in runs),
        f"{statistics.median(cpu for _, cpu, _ in runs):.1f}",
        f"{statistics.median(pg for _, _, pg in runs):.1f}" if spread else "-",
        f"{median / bare_rps:.3f}" if bare_rps else "-",
    ]


if __name__ == "__main__":
    main()
