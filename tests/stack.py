"""Real processes for tests and benchmarks: a throw-away database, a Celery worker, an
API over HTTP, free ports, any server started and stopped with its whole process tree. No
fakes of our own code: each is the production entry point (`services.processes`)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil
import psycopg
from flask import Flask
from werkzeug.serving import make_server

from services import processes
from shared.migrate import upgrade
from tests.fake_fal import FakeFalServer
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")


def redis_url(db: int) -> str:
    return f"{REDIS_BASE_URL}/{db}"


@contextmanager
def scratch_database(prefix: str = "naive_test") -> Iterator[str]:
    """A new PostgreSQL database, migrated to head, dropped afterwards; yields its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    url = f"{base}/{name}"
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, chosen by the kernel. Another
    process could take it before the caller binds it; on one test machine that is rare."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kill_tree(pid: int) -> int:
    """SIGKILL `pid` and every descendant, as an OOM kill or a lost node would; returns how
    many processes were killed. The root is stopped first, so it cannot fork a replacement
    child (a prefork pool would) between the listing and the kill."""
    try:
        root = psutil.Process(pid)
        root.suspend()
        tree = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return 0
    for process in tree:
        with suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(tree, timeout=30)
    return len(tree)


@contextmanager
def started(
    argv: Sequence[str],
    log_path: Path,
    *,
    ready: Callable[[], object],
    env: dict[str, str] | None = None,
    inherit_env: bool = True,
    timeout: float = 60,
    stop_timeout: float = 30,
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running from the repository, its output in `log_path`, once `ready()` is true;
    `env` is added to this process's environment (or is the whole of it if not
    `inherit_env`). Stopped on exit with SIGTERM (a warm shutdown). A process that exits
    before it is ready fails at once, with its log; one that does not stop within
    `stop_timeout` is killed with its whole tree, and that is an error too."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            cwd=ROOT,
            env={**(os.environ if inherit_env else {}), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def up() -> object:
        assert process.poll() is None, f"{argv[:3]} exited early:\n{log_path.read_text()}"
        return ready()

    try:
        wait_for(up, timeout=timeout, interval=0.1, message=lambda: log_path.read_text())
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            raise AssertionError(f"{argv[:3]} did not stop within {stop_timeout}s")  # noqa: B904


@contextmanager
def running_worker(
    env: dict[str, str], log_path: Path, concurrency: int = 4, app: str = processes.CELERY_APP
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (the Procfile's command line) in its own process, `env` added."""
    argv = processes.python_m(processes.worker(concurrency=concurrency, app=app))
    with started(
        argv, log_path, env=env, ready=lambda: b"ready." in log_path.read_bytes(), stop_timeout=60
    ) as process:
        yield process


def worker_with_metrics(env: dict[str, str], folder: Path) -> tuple[dict[str, str], int]:
    """`env` for a worker that serves its metrics (every process of it, in multiprocess
    mode, `folder` their files) on a free port; returns the env and the port."""
    folder.mkdir(exist_ok=True)
    port = free_port()
    return {
        **env,
        "WORKER_METRICS_PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }, port


@contextmanager
def serving(flask_app: Flask, port: int = 0) -> Iterator[str]:
    """`flask_app` over real HTTP (threaded) on 127.0.0.1; yields its base URL."""
    server = make_server("127.0.0.1", port, flask_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


def fal_env(fake: FakeFalServer) -> dict[str, str]:
    """Settings that point the fal provider, unpatched, at a fake fal server."""
    return {
        "NAIVE_PROVIDER": "fal",
        "FAL_KEY": fake.key,
        "FAL_QUEUE_RUN_HOST": fake.queue_host,
        "FAL_RUN_HOST": fake.run_host,
        "SSL_CERT_FILE": str(fake.ca_file),
        "FAL_JWKS_URL": fake.jwks_url,
        "FAL_PLATFORM_URL": fake.platform_url,
    }
