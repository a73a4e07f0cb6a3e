"""Where a submit (POST /v1/video/generate) spends its time, with numbers.

    python -m bench.profile_submit [--seconds 10] [--concurrency 8]
                                   [--ledger-sizes 0,10000,100000] [--no-py-spy]
    python -m bench.profile_submit --in-process [--submits 250] [--rounds 8] [--cprofile]
    python -m bench.profile_submit --ablate [--submits 250] [--rounds 8]
    python -m bench.profile_submit --breakdown [--submits 250] [--rounds 8]
    python -m bench.profile_submit --instructions [--submits 250]

Three parts, all on this machine against a scratch PostgreSQL database and Redis db 8
(a queue no worker reads, so nothing renders):

1. py-spy on the real API (gunicorn, the Procfile's command line) under wrk load:
   once sampling only threads that hold the GIL (the API's CPU), once every active
   thread (wall time, waits on PostgreSQL and Redis included). Prints the share of
   samples and the milliseconds per request of our own functions (inclusive) and of
   each library (by the frame that was running).
2. Round trips per submit (Flask test client, in process): SQL statements by kind,
   database transactions (each checks a connection out of the pool: a poll(2) of its
   socket, no round trip), and Redis commands by name.
3. The ledger: submit latency and the balance query for one account with 0, 10 000 and
   100 000 earlier ledger entries (every submit sums the account's whole ledger).

`--in-process` instead measures only the CPU per submit of the API and of its durable
floor (bench/submit_floor.py), both through Flask's test client in this process, rounds
alternating (`in_process_cpu`); `--cprofile` adds a cProfile of the API's submits.

`--ablate` measures, the same way, what each part of the submit that the floor does not
have costs: the API in full, rounds alternating with the API with that one part switched
off in this process (the `job.queued` event, the input's JSON Schema check, the rate
limiter, the HTTP metrics, the log lines, the publish), and all of them off at once
beside the floor: what is left is the cost of the framework (Flask's dispatch and the
contract, the ORM session, pydantic) against the floor's plain psycopg.

`--breakdown` shows where the API's CPU per submit goes, part by part: each part's
function timed (CPU, inclusive) around its calls in rounds alternating with the floor's,
the floor's statements and Redis command timed the same way beside them, what is left for
Flask, the hooks and the session, and each app's total with and without the timers.

`--instructions` counts instructions per submit with valgrind's callgrind, the unit least
moved by other work on the machine: the API in full, the API with every part `--ablate`
switches off, and the floor, each in a process of its own through Flask's test client
(`PYTHONHASHSEED=0`, the heap frozen after 100 warm-up submits), run once with 100 more
submits and once with 100 + `--submits`: the difference, divided by `--submits`, leaves
start-up and warm-up out. Needs `valgrind` (`apt-get install valgrind`); ≈ 8 minutes.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TextIO

import psycopg
import redis
from psycopg._connection_base import BaseConnection
from sqlalchemy import event

import services.worker.celery_app
import shared.jobs.events
import shared.jobs.service
from bench import harness
from services.api.app import create_app
from shared import logs
from shared.config import load_settings
from shared.db import Prepared

PATH = "/v1/video/generate"
BODY = {"model": harness.MODEL, "input": {"prompt": "bench [sim latency=1]", "duration": "5"}}
BODY_JSON = json.dumps(BODY)
REDIS_DB = 8


# ---- 1. py-spy on the real server ------------------------------------------------------


def spy_on_server(
    api: harness.Server, keys: list[str], work: Path, args: argparse.Namespace, *, gil: bool
) -> tuple[Path, int, float]:
    raw = work / f"spy-{'cpu' if gil else 'wall'}.txt"
    rate = 250
    spy = harness.py_spy(api.pid, raw, args.seconds + 3, rate=rate, gil=gil)
    cpu = api.cpu_seconds()
    result = harness.load(
        "wrk" if harness.wrk_available() else "httpx",
        api.url,
        PATH,
        BODY_JSON,
        keys,
        args.concurrency,
        args.seconds,
    )
    cpu = api.cpu_seconds() - cpu
    spy.wait(timeout=args.seconds + 60)
    print(
        f"\nload: {result.requests} submits in {result.seconds:.1f} s at concurrency "
        f"{args.concurrency} ({result.rps:.0f}/s, p50 {result.p50_ms:.0f} ms); gunicorn CPU "
        f"{cpu * 1000 / max(1, result.requests):.1f} ms per submit (/proc)"
    )
    return raw, rate, result.requests


def profile_server(database_url: str, env: dict[str, str], work: Path, args: Any) -> None:
    keys = harness.create_accounts(database_url, 32)
    with harness.gunicorn("services.api.wsgi:app", env, work / "api.log") as api:
        harness.load("wrk" if harness.wrk_available() else "httpx", api.url, PATH,
                     BODY_JSON, keys, 2, 1)  # fmt: skip
        for gil, title in ((True, "CPU (py-spy --gil)"), (False, "wall (py-spy, active threads)")):
            raw, rate, requests = spy_on_server(api, keys, work, args, gil=gil)
            harness.summarize_py_spy(raw, rate, requests, title)


# ---- 2. round trips ------------------------------------------------------------------


@contextmanager
def counting(engine: Any) -> Iterator[dict[str, Counter[str]]]:
    counts: dict[str, Counter[str]] = {"sql": Counter(), "pool": Counter(), "redis": Counter()}

    def on_execute(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        words = statement.split()
        verb = words[0].upper()
        if verb == "WITH":  # inserts in a WITH clause, then the statement's own
            tables = [words[i + 1] for i, word in enumerate(words[:-1]) if word == "INTO"]
            counts["sql"][f"INSERT {' + '.join(tables)} (one statement)"] += 1
            return
        table = ""
        for marker in ("FROM", "INTO", "UPDATE"):
            if marker in words:
                table = words[words.index(marker) + 1]
                break
        if verb == "SELECT" and "FOR UPDATE" in statement:
            verb = "SELECT … FOR UPDATE"
        counts["sql"][f"{verb} {table}".strip()] += 1

    def on_checkout(*_: Any) -> None:
        counts["pool"]["pool checkouts (no round trip)"] += 1

    original = redis.client.Redis.execute_command
    exec_command = BaseConnection._exec_command

    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        counts["redis"][str(args[0]).upper()] += 1
        return original(self, *args, **options)

    def count_command(self: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        text = command if isinstance(command, str | bytes) else b"command"
        text = text.decode() if isinstance(text, bytes) else text
        counts["sql"][text.split()[0].upper() + " (psycopg's own round trip)"] += 1
        return exec_command(self, command, *args, **kwargs)

    event.listen(engine, "before_cursor_execute", on_execute)
    event.listen(engine, "checkout", on_checkout)
    redis.client.Redis.execute_command = execute_command
    BaseConnection._exec_command = count_command
    try:
        yield counts
    finally:
        redis.client.Redis.execute_command = original
        BaseConnection._exec_command = exec_command
        event.remove(engine, "before_cursor_execute", on_execute)
        event.remove(engine, "checkout", on_checkout)


def submit(client: Any, key: str, idempotency_key: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {key}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    response = client.post(PATH, data=BODY_JSON, content_type="application/json", headers=headers)
    if response.status_code != 202:
        raise SystemExit(f"submit failed: {response.status_code} {response.get_data(True)}")


def submit_many(client: Any, keys: list[str], count: int) -> None:
    """`count` submits through `client`, its accounts' keys taken in turn."""
    for i in range(count):
        submit(client, keys[i % len(keys)])


def floor_client() -> Any:
    """The durable floor (bench/submit_floor.py) through Flask's test client. Imported only
    now: the module reads DATABASE_URL and its queue when imported."""
    return importlib.import_module("bench.submit_floor").app.test_client()


def round_trips(app: Any, key: str, n: int = 100) -> None:
    client = app.test_client()
    submit(client, key)
    for label, idem in (("without Idempotency-Key", False), ("with Idempotency-Key", True)):
        with counting(app.extensions["naive"].db.engine) as counts:
            for _ in range(n):
                submit(client, key, uuid.uuid4().hex if idem else None)
        rows = [
            [group, what, f"{count / n:g}"]
            for group in ("pool", "sql", "redis")
            for what, count in sorted(counts[group].items())
        ]
        total_pg = sum(counts["sql"].values())  # a checkout costs no round trip
        print(f"\nround trips per submit, {label} ({n} submits)")
        harness.print_table(["to", "what", "per submit"], rows)
        print(
            f"per submit: {total_pg / n:g} PostgreSQL round trips, "
            f"{sum(counts['redis'].values()) / n:g} Redis round trips"
        )


# ---- CPU per submit in process ---------------------------------------------------------


def in_process_cpu(
    app: Any, keys: list[str], submits: int, rounds: int, profile: Path | None
) -> None:
    """CPU per submit of the API and of its floor (bench/submit_floor.py), each through
    Flask's test client in this process on the same database and Redis: no server, no load
    generator, no other process in the figure. Rounds alternate; the minimum is the figure
    least disturbed by other work on the machine, the median is shown beside it."""
    floor, api = floor_client(), app.test_client()
    submit_many(api, keys, 50)
    submit_many(floor, keys, 50)
    cpu: dict[str, list[float]] = {"API submit": [], "durable floor": []}
    for _ in range(rounds):
        for name, client in (("API submit", api), ("durable floor", floor)):
            started = time.process_time()
            submit_many(client, keys, submits)
            cpu[name].append((time.process_time() - started) * 1000 / submits)
    print(f"\nCPU per submit in process ({rounds} rounds of {submits}, alternating)")
    rows = [
        [name, f"{min(ms):.2f}", f"{statistics.median(ms):.2f}", f"{max(ms):.2f}"]
        for name, ms in cpu.items()
    ]
    harness.print_table(["app", "min ms", "median ms", "max ms"], rows)
    ratio = min(cpu["API submit"]) / min(cpu["durable floor"])
    print(f"API vs floor (minimums): {ratio:.2f}x")
    if profile is not None:
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        submit_many(api, keys, submits)
        profiler.disable()
        profile.mkdir(parents=True, exist_ok=True)
        profiler.dump_stats(profile / "main-api.prof")
        harness.summarize_cprofile(profile, "main", submits)


# ---- what each part costs -------------------------------------------------------------


def _hooks_named(app: Any, name: str) -> Callable[[], Callable[[], None]]:
    """Switch off the app's request hooks called `name`; the switch returns its undo."""

    def switch() -> Callable[[], None]:
        saved = {kind: {bp: list(fs) for bp, fs in getattr(app, kind).items()}
                 for kind in ("before_request_funcs", "after_request_funcs")}  # fmt: skip
        for kind in saved:
            for functions in getattr(app, kind).values():
                functions[:] = [f for f in functions if f.__name__ != name]

        def undo() -> None:
            for kind, hooks in saved.items():
                getattr(app, kind).update(hooks)

        return undo

    return switch


def _patched(owner: Any, name: str, value: Any) -> Callable[[], Callable[[], None]]:
    def switch() -> Callable[[], None]:
        saved = getattr(owner, name)
        setattr(owner, name, value)
        return lambda: setattr(owner, name, saved)

    return switch


def _without_event() -> Callable[[], None]:
    """The `job.queued` event off: its view not rendered, its row not written."""
    insert_for, rows_with = shared.jobs.events.insert_for, Prepared.rows_with

    def without(self: Prepared, connection: Any, params: Any, carried: Any) -> list[Any]:
        return rows_with(self, connection, params, [c for c in carried if c[0] is not None])

    shared.jobs.events.insert_for = lambda job, at: (None, None)  # type: ignore[assignment,return-value]
    Prepared.rows_with = without  # type: ignore[method-assign]

    def undo() -> None:
        shared.jobs.events.insert_for = insert_for
        Prepared.rows_with = rows_with  # type: ignore[method-assign]

    return undo


def _writes_apart(self: Prepared, connection: Any, params: Any, carried: Any) -> list[Any]:
    """`Prepared.rows_with` as on SQLite: each carried insert alone, then the statement."""
    for insert, values in carried:
        insert.rows(connection, values)
    return self.rows(connection, params)


def _quiet_logs() -> Callable[[], None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)
    return lambda: root.setLevel(level)


def _parts(app: Any) -> dict[str, Callable[[], Callable[[], None]]]:
    """The parts of the submit the floor does not have, each a switch that turns it off in
    this process and returns its undo."""
    return {
        "the job.queued event (outbox row, the job's view as JSON)": _without_event,
        "the input's JSON Schema check": _patched(
            shared.jobs.service, "normalize_input", lambda model, given: dict(given)
        ),
        "the rate limiter (one Redis round trip, its headers)": _hooks_named(app, "_limit"),
        "the HTTP metrics": _hooks_named(app, "_record"),
        "the log lines": _quiet_logs,
        "the publish (LPUSH after the commit)": _patched(
            services.worker.celery_app, "after_commit", lambda session, send: None
        ),
    }


def ablation(app: Any, keys: list[str], submits: int, rounds: int) -> None:
    """CPU per submit with one part off at a time, against the API in full (rounds
    alternating), then with every part off against the floor."""
    floor, api = floor_client(), app.test_client()
    parts = _parts(app)

    def cpu(client: Any, switches: list[Callable[[], Callable[[], None]]]) -> float:
        undo = [switch() for switch in switches]
        started = time.process_time()
        submit_many(client, keys, submits)
        for step in reversed(undo):
            step()
        return (time.process_time() - started) * 1000 / submits

    # Not a part the floor lacks: off, the submit sends three statements where it sends one.
    apart = {
        "one statement for the job, its event and its hold (off: three)": _patched(
            Prepared, "rows_with", _writes_apart
        )
    }
    cpu(api, [])
    cpu(floor, [])
    rows = []
    for name, switch in {**apart, **parts, "all of the above": None}.items():
        switches = list(parts.values()) if switch is None else [switch]
        full, without = [], []
        for _ in range(rounds):
            full.append(cpu(api, []))
            without.append(cpu(api, switches))
        rows.append([name, f"{min(full):.2f}", f"{min(without):.2f}", min(full) - min(without)])
    floor_ms = min(cpu(floor, []) for _ in range(rounds))
    print(f"\nCPU per submit with one part off ({rounds} rounds of {submits}, alternating)")
    harness.print_table(
        ["part off", "API in full, min ms", "without it, min ms", "the part costs ms"],
        [[*row[:3], f"{row[3]:+.2f}"] for row in rows],
    )
    all_off = min(without)
    print(f"the durable floor: {floor_ms:.2f} ms; the API with every part off vs the floor: "
          f"{all_off / floor_ms:.2f}x, in full: {min(full) / floor_ms:.2f}x")  # fmt: skip


# ---- where the API's CPU goes, part by part ---------------------------------------------

# What `--breakdown` times in the API's submit: (depth, label, module, attribute). Depth 1
# runs inside the depth-0 row above it; depth None is every call of that kind, in
# whichever part it runs (the floor makes them too).
BREAKDOWN: list[tuple[int | None, str, str, str]] = [
    (0, "the rate limiter's Redis round trip", "services.api.ratelimit", "RedisCounters.hit"),
    (0, "the key's lookup (the session, BEGIN, one SELECT)", "services.api.context",
     "authenticated_account"),
    (0, "the body's model (pydantic)", "services.api.routes.video", "parse_body"),
    (0, "create_job", "shared.jobs.service", "create_job"),
    (1, "the price and the input's JSON Schema", "shared.jobs.service", "price_request"),
    (1, "the account's lock (one SELECT … FOR UPDATE)", "shared.ledger.service", "lock_account"),
    (1, "the job's row", "shared.jobs.service", "job_row"),
    (1, "the job's object and its event's view", "shared.jobs.service", "_new_job"),
    (1, "the job, its event and its hold (one statement)", "shared.ledger.service",
     "place_hold"),
    (0, "the log line", "logging", "Logger.info"),
    (0, "COMMIT (the ORM session's)", "sqlalchemy.orm.session", "Session.commit"),
    (0, "the publish (one LPUSH)", "services.worker.redis_publish", "RedisPublisher.send"),
    (0, "the 202's view", "shared.jobs.schemas", "JobAccepted.of"),
    (0, "the 202's body (JSON)", "services.api.routes.video", "render"),
    (None, "every psycopg execute", "psycopg", "Cursor.execute"),
    (None, "every redis-py command", "redis", "Redis.execute_command"),
]  # fmt: skip


@contextmanager
def _timing(spent: Counter[str], calls: Counter[str]) -> Iterator[None]:
    """Every function in `BREAKDOWN` adds its CPU time (inclusive) and its calls to
    `spent` and `calls` under its attribute's name, until the block ends."""
    undo = []
    for _, _, module, attribute in BREAKDOWN:
        *path, name = attribute.split(".")
        owner: Any = importlib.import_module(module)
        for step in path:
            owner = getattr(owner, step)
        original = getattr(owner, name)

        def timed(*args: Any, __f: Any = original, __k: str = attribute, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return __f(*args, **kwargs)
            finally:
                spent[__k] += time.process_time() - started
                calls[__k] += 1

        setattr(owner, name, timed)
        undo.append((owner, name, original))
    try:
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def breakdown(app: Any, keys: list[str], submits: int, rounds: int) -> None:
    """The API's CPU per submit, part by part (`BREAKDOWN`, each timed around its calls),
    beside the floor's statements and Redis command timed the same way. Rounds with the
    timers alternate with rounds without: what the timers cost themselves is shown, and
    the shares are of the timed rounds' total."""
    floor, api = floor_client(), app.test_client()

    def run(client: Any) -> float:
        started = time.process_time()
        submit_many(client, keys, submits)
        return (time.process_time() - started) * 1e6 / submits

    run(api)  # warm-up
    run(floor)
    untimed: dict[str, list[float]] = {"api": [], "floor": []}
    timed: dict[str, float] = {"api": 0.0, "floor": 0.0}
    spent: dict[str, Counter[str]] = {"api": Counter(), "floor": Counter()}
    calls: dict[str, Counter[str]] = {"api": Counter(), "floor": Counter()}
    for _ in range(rounds):
        for name, client in (("api", api), ("floor", floor)):
            untimed[name].append(run(client))
            with _timing(spent[name], calls[name]):
                timed[name] += run(client) / rounds
    n = submits * rounds
    total = timed["api"]
    rows = []
    for depth, label, _, attribute in BREAKDOWN:
        us, floor_us = spent["api"][attribute] * 1e6 / n, spent["floor"][attribute] * 1e6 / n
        shown = ("  " * depth if depth is not None else "") + label
        rows.append(
            [
                shown,
                f"{calls['api'][attribute] / n:g}",
                f"{us:.0f}",
                f"{100 * us / total:.1f}%",
                f"{floor_us:.0f}" if floor_us else "-",
            ]
        )
    rest = total - sum(spent["api"][a] for d, _, _, a in BREAKDOWN if d == 0) * 1e6 / n
    rows.append(
        [
            "the rest: Flask, the test client, the hooks, the session's set-up",
            "",
            f"{rest:.0f}",
            f"{100 * rest / total:.1f}%",
            "",
        ]
    )
    rows.append(["the submit, timed", "", f"{total:.0f}", "100%", f"{timed['floor']:.0f}"])
    api_bare, floor_bare = min(untimed["api"]), min(untimed["floor"])
    rows.append(
        [
            "the submit, without the timers (minimum of the rounds)",
            "",
            f"{api_bare:.0f}",
            "",
            f"{floor_bare:.0f}",
        ]
    )
    print(f"\nCPU per submit, part by part ({rounds} rounds of {submits} each way, alternating)")
    harness.print_table(["part", "calls", "API µs", "share", "floor µs"], rows)
    print(f"API vs floor, without the timers: {api_bare / floor_bare:.2f}x")


# ---- instructions per submit ---------------------------------------------------------

WARM_UP = 100  # submits before the heap is frozen and the counted ones begin
# What each counted process serves: the API in full, the API with every part the floor
# lacks switched off, the floor.
COUNTED = {
    "API in full": "full",
    "API, every part the floor lacks off": "parts-off",
    "durable floor": "floor",
}


def instructions_child(app: Any, which: str, keys: list[str], submits: int) -> None:
    """The submits one counted process makes (under callgrind, started by `instructions`):
    the warm-up, a frozen heap, then `submits` more."""
    client = floor_client() if which == "floor" else app.test_client()
    if which == "parts-off":
        for switch in _parts(app).values():
            switch()
    submit_many(client, keys, WARM_UP)
    gc.collect()
    gc.freeze()
    submit_many(client, keys, submits)


def instructions(env: dict[str, str], database_url: str, work: Path, submits: int) -> None:
    """Instructions per submit of each app in `COUNTED`: callgrind's totals of a process
    making `WARM_UP` more submits and of one making `WARM_UP + submits` more, the
    difference over `submits`. Three processes at a time, each with accounts of its own
    (no process waits on another's account lock)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        print("\n(instructions skipped: valgrind not found; `apt-get install valgrind`)")
        return

    def total(which: str, count: int) -> int:
        keys = json.dumps(harness.create_accounts(database_url, 32))
        child_env = {**os.environ, **env, "PYTHONHASHSEED": "0", "BENCH_KEYS": keys}
        out = work / f"callgrind-{which}-{count}.out"
        command = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}"]
        command += [sys.executable, "-m", "bench.profile_submit"]
        command += ["--callgrind-child", which, "--submits", str(count)]
        with open(work / f"callgrind-{which}-{count}.log", "w") as log:
            subprocess.run(command, env=child_env, stdout=log, stderr=log, check=True)
        for line in out.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
        raise SystemExit(f"no totals in {out}")

    runs = [(which, count) for which in COUNTED.values() for count in (WARM_UP, WARM_UP + submits)]
    with ThreadPoolExecutor(3) as pool:
        totals = dict(zip(runs, pool.map(lambda run: total(*run), runs), strict=True))
    per_submit = {
        name: (totals[(which, WARM_UP + submits)] - totals[(which, WARM_UP)]) / submits
        for name, which in COUNTED.items()
    }
    floor = per_submit["durable floor"]
    print(f"\ninstructions per submit (callgrind; {WARM_UP + submits} - {WARM_UP} submits)")
    harness.print_table(
        ["app", "instructions per submit", "vs the floor"],
        [[name, f"{n / 1e6:.2f}M", f"{n / floor:.2f}x"] for name, n in per_submit.items()],
    )


# ---- 3. the ledger -------------------------------------------------------------------


def ledger_scaling(app: Any, database_url: str, sizes: list[int], n: int = 40) -> None:
    plain = database_url.replace("postgresql+psycopg://", "postgresql://")
    client = app.test_client()
    rows = []
    for size in sizes:
        key = harness.create_accounts(database_url, 1)[0]
        with psycopg.connect(plain, autocommit=True) as conn:
            account_id = conn.execute(
                "SELECT account_id FROM api_keys WHERE display_prefix = %s", (key[:12],)
            ).fetchone()[0]
            if size:
                conn.execute(
                    "INSERT INTO ledger_entries (id, account_id, kind, amount, note, created_at) "
                    "SELECT gen_random_uuid(), %s, 'topup', 1, 'bench', now() "
                    "FROM generate_series(1, %s)",
                    (account_id, size),
                )
            conn.execute("VACUUM ANALYZE ledger_entries")
        for _ in range(3):
            submit(client, key)
        times = []
        for _ in range(n):
            started = time.perf_counter()
            submit(client, key)
            times.append(time.perf_counter() - started)
        with psycopg.connect(plain) as conn:
            plan = conn.execute(
                "EXPLAIN (ANALYZE, FORMAT JSON) SELECT "
                "coalesce(sum(CASE WHEN kind IN ('topup') THEN amount ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN kind IN ('hold') THEN amount ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN kind IN ('capture') THEN amount ELSE 0 END), 0), "
                "coalesce(sum(CASE WHEN kind IN ('release') THEN amount ELSE 0 END), 0) "
                "FROM ledger_entries WHERE account_id = %s",
                (account_id,),
            ).fetchone()[0][0]
        rows.append(
            [
                f"{size:,}",
                f"{statistics.median(times) * 1000:.1f}",
                f"{plan['Execution Time']:.2f}",
                plan["Plan"]["Plans"][0]["Node Type"] if plan["Plan"].get("Plans") else "",
            ]
        )
    print(f"\nsubmit vs the account's ledger size (in process, {n} submits each, concurrency 1)")
    harness.print_table(
        ["ledger entries", "submit p50 ms", "balance query ms (EXPLAIN ANALYZE)", "scan"], rows
    )


def _json_logs_to(stream: TextIO) -> None:
    """JSON lines at INFO, as under gunicorn, formatted and written to `stream`."""
    logs.configure(json_format=True)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10, help="wrk load per py-spy pass")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--ledger-sizes", default="0,10000,100000")
    parser.add_argument("--no-py-spy", action="store_true")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="only the CPU per submit of the API and its floor in this process",
    )
    parser.add_argument(
        "--ablate", action="store_true", help="only what each part of the submit costs"
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="only the API's CPU per submit part by part, beside the floor's",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="only instructions per submit (callgrind): the API, the API without the parts "
        "the floor lacks, the floor",
    )
    parser.add_argument("--callgrind-child", help=argparse.SUPPRESS)  # see `instructions`
    parser.add_argument(
        "--submits", type=int, default=250, help="per in-process round; counted instructions"
    )
    parser.add_argument("--rounds", type=int, default=8, help="in-process rounds")
    parser.add_argument("--cprofile", action="store_true", help="and cProfile the API after")
    args = parser.parse_args()
    if args.callgrind_child:  # a counted process: the environment is the parent's
        with ExitStack() as stack:
            _json_logs_to(stack.enter_context(open(os.devnull, "w")))  # unread
            app = create_app(load_settings(dict(os.environ)))
            keys = json.loads(os.environ["BENCH_KEYS"])
            instructions_child(app, args.callgrind_child, keys, args.submits)
            app.extensions["naive"].db.dispose()
        return
    started = time.monotonic()
    harness.print_machine()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-profile-")))
        database_url, env = harness.sink_env(stack, "profile", work, REDIS_DB)
        if args.instructions:  # the counted processes make their app and accounts
            Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
            instructions(env, database_url, work, args.submits)
            print(f"\n{harness.load_average()}")
            return
        if args.in_process or args.ablate or args.breakdown:
            os.environ.update(env)  # the floor's module reads its settings when imported
            Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
            _json_logs_to(stack.enter_context(open(os.devnull, "w")))  # unread
            app = create_app(load_settings({**os.environ, **env}))
            keys = harness.create_accounts(database_url, 32)
            if args.ablate:
                ablation(app, keys, args.submits, args.rounds)
            elif args.breakdown:
                breakdown(app, keys, args.submits, args.rounds)
            else:
                profile = work / "cprofile" if args.cprofile else None
                in_process_cpu(app, keys, args.submits, args.rounds, profile)
            app.extensions["naive"].db.dispose()
            print(f"\n{harness.load_average()}")
            return
        if args.no_py_spy or not harness.py_spy_path():
            print("\n(py-spy part skipped: `.venv/bin/pip install py-spy`)")
        else:
            profile_server(database_url, env, work, args)

        app_env = {k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        app = create_app(load_settings({**os.environ, **app_env}))
        round_trips(app, harness.create_accounts(database_url, 1)[0])
        sizes = [int(size) for size in args.ledger_sizes.split(",")]
        ledger_scaling(app, database_url, sizes)
        app.extensions["naive"].db.dispose()
    print(f"\nbench ran {time.monotonic() - started:.0f} s; {harness.load_average()}")


if __name__ == "__main__":
    main()
