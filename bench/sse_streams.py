"""Submits while 1,000 Server-Sent Event streams are open: the API's submit rate and CPU per
submit without streams, then with them, and what the open streams cost on their own.

    python -m bench.sse_streams [--streams 1000] [--concurrency 8] [--seconds 10]
                                [--client wrk|httpx] [--workers 2]

Self-contained, like bench/submit_throughput.py: the real API under gunicorn with the
Procfile's command line (gevent, `--worker-connections 1000`, `--workers 2`) on a scratch
database, CELERY_QUEUE a queue no worker reads, so every job stays queued and its stream
never ends (EVENT_STREAM_MAX_SECONDS is raised past the run so none is closed for a
reconnect). The streams are opened by one asyncio loop in a thread of this process
(httpx.AsyncClient, one connection each: a stream costs a socket, not a thread); each
counts as open once its first frame (`retry:`) arrived. Two gunicorn workers take up to
2,000 connections, so 1,000 streams and the submit load fit. The open-file limit is
raised to its hard limit for this process and the API it starts.

CPU per submit is that of the gunicorn processes plus the scratch database's PostgreSQL
backends (from /proc), over the submit window: with streams open it includes their reads
(each stream reads its job's events every second while nothing happens), which the
"streams alone" row measures with no submits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import harness

PATH = "/v1/video/generate"
BODY = json.dumps(
    {"model": harness.MODEL, "input": {"prompt": "bench [sim latency=1]", "duration": "5"}}
)
REDIS_DB = 8
OPEN_TIMEOUT = 120.0  # seconds for every stream to open
SUBMITTING = 32  # job submits in flight while the streams open


@dataclass
class Streams:
    """1,000 streams on one event loop in a thread: their jobs submitted, then held open."""

    url: str
    key: str
    count: int
    opened: int = 0
    failed: int = 0  # never opened
    open_now: int = 0
    ready: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(60, read=None)
        headers = {"Authorization": f"Bearer {self.key}"}
        submits = asyncio.Semaphore(SUBMITTING)
        async with httpx.AsyncClient(
            base_url=self.url, limits=limits, timeout=timeout, headers=headers
        ) as client:
            tasks = [asyncio.create_task(self._hold(client, submits)) for _ in range(self.count)]
            while not self.stop.is_set():
                await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _hold(self, client: httpx.AsyncClient, submits: asyncio.Semaphore) -> None:
        opened = False
        try:
            async with submits:
                answer = await client.post(
                    PATH, content=BODY, headers={"Content-Type": "application/json"}
                )
            answer.raise_for_status()
            path = f"/v1/jobs/{answer.json()['job_id']}/events"
            async with client.stream("GET", path) as response:
                response.raise_for_status()
                async for _ in response.aiter_lines():
                    if not opened:
                        opened = True
                        self.opened += 1
                        self.open_now += 1
                        self._check_ready()
        except httpx.HTTPError:
            if not opened:
                self.failed += 1
                self._check_ready()
        finally:
            if opened:
                self.open_now -= 1

    def _check_ready(self) -> None:
        if self.opened + self.failed >= self.count:
            self.ready.set()


@dataclass(frozen=True)
class Window:
    label: str
    result: harness.LoadResult | None
    seconds: float
    gunicorn_cpu: float
    postgres_cpu: float
    load_average: str


def _window(
    label: str,
    args: argparse.Namespace,
    api: harness.Server,
    keys: list[str],
    database_url: str,
    submit: bool,
) -> Window:
    """Submits for `args.seconds` (or, without `submit`, the same time idle) and the CPU the
    API and its database used meanwhile."""
    cpu, pg, started = api.cpu_seconds(), harness.postgres_cpu(database_url), time.monotonic()
    result = None
    if submit:
        result = harness.load(
            args.client, api.url, PATH, BODY, keys, args.concurrency, args.seconds
        )
    else:
        time.sleep(args.seconds)  # the interval measured: nothing to wait for
    return Window(
        label,
        result,
        time.monotonic() - started,
        api.cpu_seconds() - cpu,
        harness.cpu_delta(pg, harness.postgres_cpu(database_url)),
        harness.load_average(),
    )


def _row(window: Window, streams: int) -> list[object]:
    cpu = window.gunicorn_cpu + window.postgres_cpu
    share = f"{cpu / window.seconds * 100:.0f} %"
    if window.result is None:
        return [window.label, streams, "-", "-", "-", "-", "-", "-", share, window.load_average]
    result, n = window.result, max(1, window.result.requests)
    return [
        window.label,
        streams,
        f"{result.rps:.0f}",
        f"{result.p50_ms:.1f}",
        f"{result.p99_ms:.1f}",
        result.failures,
        f"{window.gunicorn_cpu * 1000 / n:.2f}",
        f"{cpu * 1000 / n:.2f}",
        share,
        window.load_average,
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8, help="submits in flight")
    parser.add_argument("--seconds", type=float, default=10, help="per window")
    parser.add_argument("--accounts", type=int, default=8, help="accounts the submits use")
    parser.add_argument(
        "--client", choices=("wrk", "httpx"), default="wrk" if harness.wrk_available() else "httpx"
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")))
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the API inherits it
    started = time.monotonic()
    harness.print_machine()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-sse-")))
        database_url, env = harness.sink_env(stack, "sse", work, REDIS_DB)
        env["EVENT_STREAM_MAX_SECONDS"] = "3600"
        api = stack.enter_context(
            harness.gunicorn("services.api.wsgi:app", env, work / "api.log", workers=args.workers)
        )
        keys = harness.create_accounts(database_url, args.accounts)
        harness.load(args.client, api.url, PATH, BODY, keys, 2, 1)  # warm up
        without = _window("submits", args, api, keys, database_url, submit=True)

        streams = Streams(api.url, harness.create_accounts(database_url, 1)[0], args.streams)
        thread = threading.Thread(target=streams.run, name="streams", daemon=True)
        thread.start()
        stack.callback(thread.join, 30)
        stack.callback(streams.stop.set)
        opening = time.monotonic()
        if not streams.ready.wait(OPEN_TIMEOUT):
            raise SystemExit(f"only {streams.opened} of {args.streams} streams opened")
        opened_in = time.monotonic() - opening
        alone = _window("streams alone", args, api, keys, database_url, submit=False)
        with_streams = _window("submits + streams", args, api, keys, database_url, submit=True)
        still_open = streams.open_now

    print(
        f"\n{args.streams} SSE streams (GET /v1/jobs/{{id}}/events, jobs that stay queued): "
        f"{streams.opened} opened in {opened_in:.1f} s (job submits included), "
        f"{streams.failed} failed, {still_open} open at the end; gunicorn workers="
        f"{args.workers} (gevent, 1000 connections each); submits: POST {PATH}, "
        f"client={args.client}, concurrency {args.concurrency}, {args.seconds:g} s per window"
    )
    harness.print_table(
        [
            "window",
            "streams",
            "submits/s",
            "p50 ms",
            "p99 ms",
            "errors",
            "gunicorn CPU ms/submit",
            "CPU ms/submit (+PostgreSQL)",
            "CPU, % of one core (gunicorn+PostgreSQL)",
            "load",
        ],
        [
            _row(without, 0),
            _row(alone, args.streams),
            _row(with_streams, args.streams),
        ],
    )
    print(f"bench ran {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
