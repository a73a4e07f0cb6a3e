"""Real processes for tests and benchmarks: a throw-away database, a Celery worker, an
API over HTTP. No fakes of our own code: each is the production entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from flask import Flask
from werkzeug.serving import make_server

from services.fake_fal import FakeFalServer
from shared.migrate import upgrade
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


@contextmanager
def running_worker(
    env: dict[str, str], log_path: Path, concurrency: int = 4, app: str = "services.worker.app"
) -> Iterator[subprocess.Popen[bytes]]:
    """A real Celery worker (prefork, the Procfile's flags) in its own process, `env` added."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                app,
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: b"ready." in log_path.read_bytes(),
            timeout=60,
            message=lambda: log_path.read_text(),
        )
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


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
