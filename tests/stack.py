"""Real processes for tests and benchmarks: a throw-away database, a Celery worker, an
API over HTTP, free ports, any server started and stopped with its whole process tree. No
fakes of our own code: each is the production entry point (`services.processes`)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import psycopg
import redis
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
    on_hang: Callable[[int, Path], None] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` running from the repository, its output in `log_path`, once `ready()` is true;
    `env` is added to this process's environment (or is the whole of it if not
    `inherit_env`). Stopped on exit with SIGTERM (a warm shutdown). A process that exits
    before it is ready fails at once, with its log; one that does not stop within
    `stop_timeout` is killed with its whole tree (after `on_hang(pid, log_path)`, which can
    gather evidence), and that is an error too."""
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
            if on_hang is not None:
                on_hang(process.pid, log_path)
            kill_tree(process.pid)
            process.wait()
            raise AssertionError(  # noqa: B904
                f"{argv[:3]} did not stop within {stop_timeout}s; its log ends:\n"
                f"{log_path.read_text()[-12000:]}"
            )


def cry(pid: int, log_path: Path) -> None:
    """Ask a hung Celery worker for every thread's stack: its main process logs them on
    SIGUSR1 (Celery's "cry" handler; in the pool's children SIGUSR1 is the soft time limit,
    so they are left alone). Waits, at most a few seconds, for the log to stop growing."""
    with suppress(psutil.NoSuchProcess):
        psutil.Process(pid).send_signal(signal.SIGUSR1)
    sizes = [-1]

    def settled() -> bool:
        sizes.append(log_path.stat().st_size)
        return sizes[-1] == sizes[-2]

    with suppress(AssertionError):
        wait_for(settled, timeout=5, interval=0.5)


@contextmanager
def running_worker(
    env: dict[str, str], log_path: Path, concurrency: int = 4, app: str = processes.CELERY_APP
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (the Procfile's command line) in its own process, `env` added."""
    argv = processes.python_m(processes.worker(concurrency=concurrency, app=app))
    with started(
        argv,
        log_path,
        env=env,
        ready=lambda: b"ready." in log_path.read_bytes(),
        stop_timeout=60,
        on_hang=cry,
    ) as process:
        yield process


@dataclass(frozen=True)
class Api:
    """The API under gunicorn: its public base URL, its metrics URL, its master's process."""

    url: str
    metrics_url: str
    process: subprocess.Popen[bytes]


@contextmanager
def running_api(
    env: dict[str, str], log_path: Path, *, workers: int = 1, app: str = processes.API_APP
) -> Iterator[Api]:
    """`app` under gunicorn with the Procfile's command line (gevent workers), `env` added,
    on free loopback ports: the public one and the metrics one (API_METRICS_PORT)."""
    port, metrics_port = free_port(), free_port()
    argv = processes.api(
        bind=f"127.0.0.1:{port}", metrics_bind=f"127.0.0.1:{metrics_port}", workers=workers, app=app
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            httpx.get(f"{url}/healthz", timeout=2)  # any answer: bench apps may lack the route
        except httpx.HTTPError:
            return False
        return True

    with started(
        processes.python_m(argv),
        log_path,
        env={**env, "API_METRICS_PORT": str(metrics_port)},
        ready=answers,
    ) as process:
        yield Api(url, f"http://127.0.0.1:{metrics_port}/metrics", process)


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


PG_BIN = Path(os.environ.get("TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PrivatePostgres:
    """A PostgreSQL server of our own, for tests that stop and start it (never the machine's
    server: other test runs use that one). `initdb` in a new temporary folder, trust auth,
    listening on 127.0.0.1 and a free port, its unix socket inside the folder; `stop()` and
    `start()` keep the data folder, so the data survives an outage. `close()` stops it and
    removes the folder: call it from a fixture's finalizer.

    initdb refuses to run as root: as root, the server's commands run as the `postgres` OS
    user (the folder is theirs)."""

    OS_USER = "postgres"

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are root's, closed to the postgres user.
        self.folder = Path(tempfile.mkdtemp(prefix="naive-private-pg-"))
        self.data = self.folder / "data"
        self.socket_dir = self.folder / "socket"
        self.log = self.folder / "postgres.log"
        self.port = free_port()
        self.as_root = os.geteuid() == 0
        self.stops = 0
        if self.as_root:
            shutil.chown(self.folder, user=self.OS_USER, group=self.OS_USER)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """A SQLAlchemy URL (as DATABASE_URL) of one of this server's databases."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float = 120) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if self.as_root:
            command = ["runuser", "-u", self.OS_USER, "--", *command]
        done = subprocess.run(
            command, cwd=self.folder, capture_output=True, text=True, timeout=timeout
        )
        log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
        assert done.returncode == 0, (command, done.returncode, done.stdout, done.stderr, log)

    def init(self) -> None:
        """initdb and our settings (written into the folder: every start uses them)."""
        self.socket_dir.mkdir()
        if self.as_root:
            shutil.chown(self.socket_dir, user=self.OS_USER, group=self.OS_USER)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# tests.stack.PrivatePostgres\n"
                "listen_addresses = '127.0.0.1'\n"
                f"port = {self.port}\n"
                f"unix_socket_directories = '{self.socket_dir}'\n"
                "fsync = off\n"  # a throw-away server; a clean stop still keeps the data
                "shared_buffers = 32MB\n"
                "max_connections = 100\n"
            )

    def ready(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def start(self) -> None:
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60")
        wait_for(self.ready, timeout=30, interval=0.1, message="private PostgreSQL not ready")

    def stop(self, mode: str = "fast") -> None:
        """`pg_ctl stop`; "fast" disconnects every client, as a restart or failover does."""
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", mode, "-w", "-t", "60")
        self.stops += 1

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def create_database(self, name: str = "naive") -> str:
        """A new database, migrated to head; returns its URL."""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.url(name)
        upgrade(url)
        return url

    def close(self) -> None:
        """Stop the server if it runs (fast, else immediate) and remove its folder."""
        try:
            if self.running():
                try:
                    self.stop("fast")
                except (AssertionError, subprocess.TimeoutExpired):
                    self.stop("immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class PrivateRedis:
    """A redis-server of our own, without persistence: a restart loses every message."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def _up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    "--dir",
                    str(self.folder),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._up, timeout=20, message="private redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def keys(self) -> int:
        """How many keys all databases hold."""
        keyspace = self.client().info("keyspace")
        return sum(info.get("keys", 0) for name, info in keyspace.items() if name.startswith("db"))

    def flushall(self) -> int:
        """Drop every key of every database; returns how many keys there were."""
        keys = self.keys()
        self.client().flushall()
        return keys
