"""What the benches share: the machine's description, real processes started the way the
Procfile starts them, accounts, HTTP load generators (wrk, or httpx in threads), CPU
accounting of process trees (psutil), py-spy summaries and Markdown tables.

Nothing here is a fake of the product: the API runs under gunicorn and the worker under
Celery with the Procfile's command lines (`services.processes`), the database is a
scratch PostgreSQL database migrated to head (`tests.stack.scratch_database`).
"""

from __future__ import annotations

import json
import os
import platform
import pstats
import re
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import psycopg
import redis

from shared import accounts
from shared.db import Database
from tests.stack import (
    PG_ADMIN_URL,
    free_port,
    redis_url,
    running_api,
    running_worker,
    scratch_database,
)

ROOT = Path(__file__).resolve().parent.parent
MODEL = "fal-ai/kling-video/v3/pro/text-to-video"

__all__ = [
    "MODEL",
    "ROOT",
    "LoadResult",
    "Server",
    "cpu_delta",
    "cpu_seconds",
    "create_accounts",
    "delete_redis_keys",
    "free_port",
    "gunicorn",
    "load",
    "load_average",
    "machine",
    "postgres_cpu",
    "print_table",
    "py_spy",
    "py_spy_path",
    "redis_url",
    "running_worker",
    "scratch_database",
    "sink_env",
    "summarize_py_spy",
    "unique_queue",
]


# ---- the machine ---------------------------------------------------------------------


def machine() -> dict[str, str]:
    """nproc, CPU model, RAM and the versions the figures depend on."""
    cpu = "unknown"
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as handle:
        total_kib = int(handle.readline().split()[1])
    with psycopg.connect(PG_ADMIN_URL) as conn:
        postgres = conn.execute("SHOW server_version").fetchone()[0]
    redis_version = redis.Redis.from_url(redis_url(0)).info("server")["redis_version"]
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{total_kib / 1024**2:.1f} GiB",
        "python": platform.python_version(),
        "postgresql": postgres.split()[0],
        "redis": redis_version,
    }


def print_machine() -> None:
    m = machine()
    print(
        f"machine: {m['nproc']} CPUs ({m['cpu']}), {m['ram']} RAM; Python {m['python']}, "
        f"PostgreSQL {m['postgresql']}, Redis {m['redis']}; {load_average()}"
    )


def load_average() -> str:
    """The 1-minute load average: other test runs share this machine's two cores."""
    with open("/proc/loadavg") as handle:
        return "load average " + handle.read().split()[0]


# ---- processes -----------------------------------------------------------------------


def unique_queue(name: str) -> str:
    """A Celery queue name of this run alone, so no other test's worker reads it."""
    return f"bench-{name}-{uuid.uuid4().hex[:8]}"


def process_tree(root: int) -> list[psutil.Process]:
    """`root` and its live descendants."""
    try:
        process = psutil.Process(root)
        return [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.NoSuchProcess:
        return 0.0
    return times.user + times.system


def cpu_seconds(root: int) -> float:
    """User + system CPU time of `root` and its live descendants so far."""
    return sum(_cpu(process) for process in process_tree(root))


def postgres_cpu(database_url: str) -> dict[int, float]:
    """CPU seconds so far of each PostgreSQL backend connected to this database (from
    pg_stat_activity and psutil: the server runs on this machine). Diff two snapshots
    with `cpu_delta`."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        pids = [
            row[0]
            for row in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,)
            ).fetchall()
        ]
    return {pid: cpu_seconds_of(pid) for pid in pids}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two snapshots (a backend that ended in between is not counted)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def cpu_seconds_of(pid: int) -> float:
    try:
        return _cpu(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return 0.0


@dataclass(frozen=True)
class Server:
    url: str
    pid: int

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


@contextmanager
def gunicorn(
    app: str, env: dict[str, str], log: Path, *, workers: int | None = None
) -> Iterator[Server]:
    """`app` under gunicorn with the Procfile's command line; yields its URL and pid.

    The Procfile's `api` line (`tests.stack.running_api`: gevent workers), with only the
    bind addresses narrowed to loopback and a free metrics port.
    """
    count = workers or int(env.get("WEB_CONCURRENCY") or os.environ.get("WEB_CONCURRENCY") or 2)
    with running_api(env, log, workers=count, app=app) as api:
        yield Server(api.url, api.process.pid)


def create_accounts(database_url: str, count: int, credits: int = 10_000_000) -> list[str]:
    """`count` accounts with plenty of credits; returns their API keys."""
    db = Database(database_url)
    try:
        with db.transaction() as session:
            return [
                accounts.create_account(
                    session=session, name=f"bench-{i}", credits=Decimal(credits)
                ).api_key
                for i in range(count)
            ]
    finally:
        db.dispose()


def sink_env(stack: ExitStack, name: str, work: Path, redis_db: int) -> tuple[str, dict[str, str]]:
    """A scratch database and an API environment whose task queue no worker reads (nothing
    renders), rate limits out of the way; both cleaned up when `stack` closes."""
    database_url = stack.enter_context(scratch_database("naive_bench"))
    queue = unique_queue(name)
    broker = redis_url(redis_db)
    stack.callback(delete_redis_keys, broker, queue)
    return database_url, {
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker,
        "CELERY_QUEUE": queue,
        "RATE_LIMIT": "100000000 per minute",
        "NAIVE_DATA_DIR": str(work / "data"),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "prometheus"),
        "SECRET_KEY": "bench",
    }


def delete_redis_keys(url: str, *names: str) -> None:
    """Delete this run's keys (its queues and kombu's bindings of them), nothing else."""
    client = redis.Redis.from_url(url)
    try:
        doomed = set()
        for name in names:
            doomed.add(name)
            doomed.update(client.scan_iter(match=f"*{name}*", count=1000))
        if doomed:
            client.delete(*doomed)
    finally:
        client.close()


# ---- HTTP load -----------------------------------------------------------------------


@dataclass(frozen=True)
class LoadResult:
    client: str
    concurrency: int
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    failures: int  # non-2xx answers and socket errors

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


WRK_SCRIPT = """
local keys = {%(keys)s}
local body = %(body)s
local path = %(path)s
local index = 0
local threads = {}
function setup(thread)
  thread:set("offset", #threads)
  table.insert(threads, thread)
end
function init(args)
  index = offset
end
function request()
  index = index + 1
  local key = keys[(index %% #keys) + 1]
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
  }, body)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nWRKJSON {"requests":%%d,"duration_us":%%d,"p50_us":%%d,"p99_us":%%d,' ..
    '"status":%%d,"connect":%%d,"read":%%d,"write":%%d,"timeout":%%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def _lua_string(text: str) -> str:
    return json.dumps(text)  # a JSON string is a valid Lua string literal for ASCII text


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def load_wrk(
    url: str, path: str, body: str, keys: Sequence[str], concurrency: int, seconds: float
) -> LoadResult:
    """`wrk` (closed loop: `concurrency` connections, each sends its next request when the
    last is answered) for `seconds`; keys taken in turn, each thread from its own offset."""
    script = WRK_SCRIPT % {
        "keys": ", ".join(_lua_string(key) for key in keys),
        "body": _lua_string(body),
        "path": _lua_string(path),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
    try:
        threads = min(2, concurrency)
        output = subprocess.run(
            [
                "wrk",
                f"-t{threads}",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                handle.name,
                url + path,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(handle.name)
    match = re.search(r"WRKJSON (\{.*\})", output)
    if match is None:
        raise RuntimeError(f"wrk printed no summary:\n{output}")
    data = json.loads(match.group(1))
    errors = sum(data[name] for name in ("status", "connect", "read", "write", "timeout"))
    return LoadResult(
        client="wrk",
        concurrency=concurrency,
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        failures=errors,
    )


def load_httpx(
    url: str, path: str, body: str, keys: Sequence[str], concurrency: int, seconds: float
) -> LoadResult:
    """The same closed loop with httpx, one thread and one client per connection. Python
    threads share the GIL and the server's two cores: slower than wrk, same for both apps."""
    stop = time.monotonic() + seconds
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    failures = [0] * concurrency

    def run(slot: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            i = slot
            while time.monotonic() < stop:
                key = keys[i % len(keys)]
                i += concurrency
                started = time.perf_counter()
                try:
                    response = client.post(
                        path,
                        content=body,
                        headers={
                            "Content-Type": "application/json",
                            "Authorization": f"Bearer {key}",
                        },
                    )
                    ok = response.is_success
                except httpx.HTTPError:
                    ok = False
                latencies[slot].append(time.perf_counter() - started)
                failures[slot] += 0 if ok else 1

    wall = time.perf_counter()
    workers = [threading.Thread(target=run, args=(slot,)) for slot in range(concurrency)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    wall = time.perf_counter() - wall
    flat = sorted(x for slot in latencies for x in slot)
    return LoadResult(
        client="httpx",
        concurrency=concurrency,
        requests=len(flat),
        seconds=wall,
        p50_ms=statistics.median(flat) * 1000 if flat else 0.0,
        p99_ms=flat[min(len(flat) - 1, int(len(flat) * 0.99))] * 1000 if flat else 0.0,
        failures=sum(failures),
    )


def load(
    client: str,
    url: str,
    path: str,
    body: str,
    keys: Sequence[str],
    concurrency: int,
    seconds: float,
) -> LoadResult:
    run = load_wrk if client == "wrk" else load_httpx
    return run(url, path, body, keys, concurrency, seconds)


# ---- py-spy -----------------------------------------------------------------------

OWN = ("services/", "shared/")


def py_spy_path() -> str | None:
    local = ROOT / ".venv" / "bin" / "py-spy"
    return shutil.which("py-spy") or (str(local) if local.exists() else None)


def py_spy(
    pid: int, output: Path, seconds: float | None, *, rate: int = 250, gil: bool
) -> subprocess.Popen[bytes]:
    """Sample `pid` and its children for `seconds` (None: until SIGINT) into `output`, in
    py-spy's raw format: with `gil`, only threads holding the GIL (CPU in Python), else
    every active thread."""
    command = [
        py_spy_path() or "py-spy",
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--format",
        "raw",
        "--rate",
        str(rate),
        *(["--duration", str(round(seconds))] if seconds else []),
        "--nonblocking",
        "--output",
        str(output),
        *(["--gil"] if gil else []),
    ]
    spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # let it attach to every child first
    return spy


def _frames(line: str) -> tuple[list[str], int]:
    stack, _, count = line.rstrip("\n").rpartition(" ")
    frames = [f for f in stack.split(";") if f and not f.startswith("process ")]
    return frames, int(count)


def _function(frame: str) -> str:
    """`name (path/file.py:12)` → `path/file.py:name`."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if match is None:
        return frame
    return f"{match.group(2)}:{match.group(1)}"


def _package(frame: str) -> str:
    path = _function(frame).split(":", 1)[0]
    if path.startswith(("services/", "shared/")):
        return "our code (services/, shared/)"
    top = path.split("/", 1)[0].removesuffix(".py")
    return {
        "kombu": "celery, kombu",
        "celery": "celery, kombu",
        "werkzeug": "flask, werkzeug",
        "flask": "flask, werkzeug",
        "pythonjsonlogger": "logging",
        "prometheus_client": "prometheus_client",
    }.get(top, top)


def summarize_py_spy(
    raw: Path, rate: int, requests: int, title: str, unit: str = "request"
) -> None:
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    waits: Counter[str] = Counter()
    total = 0
    with raw.open() as handle:
        for line in handle:
            frames, count = _frames(line)
            if not frames:
                continue
            total += count
            for name in {_function(f) for f in frames if _function(f).startswith(OWN)}:
                own[name] += count
            leaf = frames[-1]
            packages[_package(leaf)] += count
            if "psycopg/" in leaf:
                waits["in psycopg (mostly waiting on PostgreSQL)"] += count
            elif "redis/" in leaf:
                waits["in redis-py (mostly waiting on Redis)"] += count
    if not total:
        print(f"\n{title}: no samples")
        return

    def ms(count: int) -> str:
        return f"{count / rate * 1000 / max(1, requests):.2f}"

    per = f"ms/{unit}"
    print(f"\n{title}: {total} samples at {rate} Hz over {requests} {unit}s")
    rows = [[name, f"{100 * n / total:.1f}%", ms(n)] for name, n in own.most_common(18)]
    print_table(["our function (inclusive)", "share", per], rows)
    print()
    rows = [[name, f"{100 * n / total:.1f}%", ms(n)] for name, n in packages.most_common(12)]
    print_table(["running in (self)", "share", per], rows)
    if waits:
        print()
        rows = [[name, f"{100 * n / total:.1f}%", ms(n)] for name, n in waits.most_common()]
        print_table(["leaf frame", "share", per], rows)


# ---- output --------------------------------------------------------------------------


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A GitHub-flavoured Markdown table, padded so it also reads well in a terminal."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        padded = (cell.rjust(width) for cell, width in zip(row, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    print(line(cells[0]))
    print("|" + "|".join("-" * (width + 1) + ":" for width in widths) + "|")
    for row in cells[1:]:
        print(line(row))


def summarize_cprofile(folder: Path, kind: str, operations: int, top: int = 25) -> None:
    """The `top` functions by cumulative and by own time of every `kind` ("main" or
    "child") process, in ms per operation."""
    files = sorted(str(path) for path in folder.glob(f"{kind}-*.prof"))
    if not files:
        print(f"no {kind} profiles in {folder}")
        return
    stats = pstats.Stats(*files)
    total = sum(entry[2] for entry in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n{kind} processes ({len(files)}): {1000 * total / operations:.2f} ms profiled/op")
    for order in ("cumulative", "tottime"):
        rows = sorted(
            stats.stats.items(),  # type: ignore[attr-defined]
            key=lambda item: item[1][3 if order == "cumulative" else 2],
            reverse=True,
        )[:top]
        print(f"  by {order}: ms/op (cumulative, own), calls/op, function")
        for (path, line, name), (_, calls, own, cumulative, _callers) in rows:
            where = f"{Path(path).name}:{line}:{name}" if line else name
            print(
                f"    {1000 * cumulative / operations:7.3f} {1000 * own / operations:7.3f}"
                f" {calls / operations:7.2f}  {where}"
            )
