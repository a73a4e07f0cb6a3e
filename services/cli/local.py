"""`naive local up|down|status`: the whole stack on this machine, no servers needed.

With no environment set this is the embedded default (a SQLite file, kombu's
filesystem broker, the simulator) under `NAIVE_DATA_DIR` (default `./var`). `up` runs
the migrations, makes a local account once, starts the API, a worker and beat in the
background, writes `local-stack.json` there and records that folder for the user (one
record per stack, removed by `down`): the other commands then talk to that stack unless
given another URL (`NAIVE_API_URL`), with its key unless given one, from any working
directory (see `stack_path`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import signal
import socket
import subprocess
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import httpx

from services import processes
from services.cli.numbers import DECIMAL
from shared import accounts
from shared.config import Settings, load_settings
from shared.db import Database
from shared.ledger.service import grant_command
from shared.migrate import upgrade

STACK_FILE = "local-stack.json"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0


def stack_path() -> Path:
    """The local stack's file. `NAIVE_DATA_DIR`'s when it is set; else that of a stack
    running from the working directory's `./var`; else that of the running stack `naive
    local up` started most recently, wherever it ran; else `./var`'s (where `up` starts one)."""
    here = load_settings().data_dir / STACK_FILE
    if "NAIVE_DATA_DIR" in os.environ or _running(here):
        return here
    return next((path for path in _started() if _running(path)), here)


def stack_settings() -> Settings:
    """The settings of the stack every command finds (see `stack_path`): its data folder,
    so its database, unless DATABASE_URL names one. What `naive admin` works on."""
    if os.environ.get("DATABASE_URL"):
        return load_settings()
    return load_settings({**os.environ, "NAIVE_DATA_DIR": str(stack_path().parent)})


def read_local_stack() -> dict[str, Any] | None:
    """The local stack's API URL and key (and its processes), if `naive local up` made one."""
    return _read(stack_path())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _running(path: Path) -> bool:
    """Whether a process of the stack recorded at `path` still runs."""
    pids = (_read(path) or {}).get("pids") or {}
    return any(_alive(pid) for pid in pids.values())


def _records() -> Path:
    """Per user, a file per stack `naive local up` started, naming its data folder, until
    `naive local down` stops it: `$XDG_STATE_HOME/naive/stacks/` (by default under
    `~/.local/state`). One per stack, so a second stack never hides the first."""
    state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state_home) / "naive" / "stacks"


def _record(data_dir: Path) -> Path:
    """The record of the stack whose data folder is `data_dir`."""
    return _records() / hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]


def _started() -> list[Path]:
    """The stack files of the recorded stacks, the one started last first."""
    found = []
    for record in _records().glob("*"):
        with contextlib.suppress(OSError):  # a record that `down` removes meanwhile
            found.append((record.stat().st_mtime_ns, record.read_text().strip()))
    return [Path(folder) / STACK_FILE for _, folder in sorted(found, reverse=True)]


def _stack_using(port: int) -> Path | None:
    """The data folder of a running local stack whose API (or its metrics) has `port`."""
    for path in _started():
        stack = _read(path) or {}
        ports = {httpx.URL(stack.get("api_url", "")).port, stack.get("metrics_port")}
        if port in ports and _running(path):
            return path.parent
    return None


def _alive(pid: int) -> bool:
    """True while the process runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return status != "Z"


def _healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def port_taken(port: int) -> bool:
    """Whether something on this machine already listens on 127.0.0.1:`port`; our API
    would fail to bind it while the other program answers our health checks. Connections
    of a stack that stopped, lingering in TIME_WAIT, do not count: gunicorn binds with
    SO_REUSEADDR too."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _wait(what: str, ready: Any, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while not ready():
        if time.monotonic() > deadline:
            raise click.ClickException(f"{what} did not start; see {log}")
        time.sleep(0.2)


def _start(name: str, argv: list[str], logs: Path) -> int:
    """Start one process in its own session, with its own metrics folder."""
    log = logs / f"{name}.log"
    metrics_dir = logs.parent / "prometheus" / name
    metrics_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    return process.pid


@click.group()
def local() -> None:
    """Run the API, a worker and beat on this machine (embedded default: no servers).

    \b
    Every command finds the stack from any directory: NAIVE_DATA_DIR's when set; else one
    running from ./var here; else, of the running stacks `naive local up` started anywhere
    (recorded in $XDG_STATE_HOME/naive/stacks/), the one started last; else ./var, where
    `up` starts one.
    """


@local.command()
@click.option(
    "--port",
    default=8000,
    envvar="NAIVE_LOCAL_PORT",
    show_default=True,
    show_envvar=True,
    help="Port of the local API (its metrics listen on API_METRICS_PORT, default 9101).",
)
@click.option(
    "--credits",
    "credits_",
    type=DECIMAL,
    default=Decimal(100),
    show_default=True,
    help="Starting credits of the local account (made once).",
)
def up(port: int, credits_: Decimal) -> None:
    """Start the local stack in the background (idempotent: one already running, started
    from any directory, is kept)."""
    found = stack_path()
    running = _read(found) or {}
    if running.get("pids") and all(_alive(pid) for pid in running["pids"].values()):
        click.echo(
            f"local stack already running at {running['api_url']} "
            f"(data and logs in {found.parent})",
            err=True,
        )
        _echo_topup(running["account_id"])
        return
    settings = load_settings()
    stack = _read(settings.data_dir / STACK_FILE) or {}
    for name, taken, option in (
        ("API", port, "--port or NAIVE_LOCAL_PORT=…"),
        ("API's metrics", settings.api_metrics_port, "API_METRICS_PORT=…"),
    ):
        if port_taken(taken):
            raise click.ClickException(
                f"port {taken} (the {name}) is {_user(taken)}; choose a free one with {option}"
            )
    settings.ensure_local_dirs()
    upgrade(settings.database_url)
    if "api_key" not in stack:
        db = Database(settings.database_url)
        with db.transaction() as session:
            created = accounts.create_account(session=session, name="local", credits=credits_)
        db.dispose()
        stack.update(
            account_id=str(created.account_id),
            api_key=created.api_key,
            key_id=str(created.key_id),  # what `naive budgets set --key-id` names
        )
    logs = settings.data_dir / "logs"
    logs.mkdir(exist_ok=True)
    api_url = f"http://127.0.0.1:{port}"
    # The Procfile's command lines, sized for a laptop: one API worker (its gevent serves
    # many connections; rate limits counted in memory, without Redis, hold across the
    # whole API only in one process), two task processes.
    commands = {
        "api": processes.api(
            bind=f"127.0.0.1:{port}",
            metrics_bind=f"127.0.0.1:{settings.api_metrics_port}",
            workers=1 if settings.rate_limit_storage_url == "memory://" else 2,
        ),
        "worker": processes.worker(concurrency=2),
        "beat": processes.beat(schedule=settings.data_dir / "celerybeat-schedule"),
    }
    pids = {name: _start(name, processes.python_m(argv), logs) for name, argv in commands.items()}
    stack.update(api_url=api_url, metrics_port=settings.api_metrics_port, pids=pids)
    (settings.data_dir / STACK_FILE).write_text(json.dumps(stack, indent=2))
    record = _record(settings.data_dir)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(str(settings.data_dir))
    _wait("the API", lambda: _healthy(api_url), logs / "api.log")
    _wait(
        "the worker", lambda: b"ready." in (logs / "worker.log").read_bytes(), logs / "worker.log"
    )
    click.echo(f"local stack up: API {api_url}, logs in {logs}", err=True)
    _echo_topup(stack["account_id"])
    click.echo("`naive local down` stops it.", err=True)


def _user(port: int) -> str:
    """Who uses `port`: another local stack (and how to stop it), or another program."""
    folder = _stack_using(port)
    if folder is None:
        return "already in use by another program"
    return (
        f"used by the local stack in {folder} "
        f"(`NAIVE_DATA_DIR={shlex.quote(str(folder))} naive local down` stops it)"
    )


def _echo_topup(account_id: str) -> None:
    click.echo(f"add credits to the local account: {grant_command(account_id, '100')}", err=True)


@local.command()
def down() -> None:
    """Stop the local stack, started from any directory (the database and media stay)."""
    path = stack_path()
    stack = _read(path) or {}
    pids = stack.pop("pids", None) or {}
    for pid in pids.values():
        if _alive(pid):
            # The main process only: it stops its own children (a worker's pool finishes
            # running tasks). SIGTERM to the whole group would kill the pool's children
            # under it, and Celery would start new ones and wait for them.
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while any(_alive(pid) for pid in pids.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for name, pid in pids.items():
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
            click.echo(f"killed {name} (pid {pid}): it did not stop in time", err=True)
        else:
            click.echo(f"stopped {name} (pid {pid})", err=True)
    if stack:
        path.write_text(json.dumps(stack, indent=2))
    _record(path.parent).unlink(missing_ok=True)


@local.command()
def status() -> None:
    """Say whether the local stack is running, and where."""
    path = stack_path()
    stack = _read(path) or {}
    pids = stack.get("pids") or {}
    for name, pid in pids.items():
        click.echo(f"{name}: {'running' if _alive(pid) else 'stopped'} (pid {pid})")
    if pids:
        click.echo(f"API {stack.get('api_url')}, data and logs in {path.parent}")
    else:
        click.echo("local stack is not running; `naive local up` starts it")
