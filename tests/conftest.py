"""Test fixtures: a real PostgreSQL database, real Redis, a real Celery worker.

One database per test run (migrated once, dropped at the end), one Redis database
number, one worker process for the session. Tests stay apart by using fresh accounts,
not by rolling back: the worker must see what the API committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient

from services.api.app import create_app
from services.worker.celery_app import make_celery
from shared import accounts
from shared.config import Settings, load_settings
from shared.db import Database
from shared.migrate import upgrade
from shared.runtime import Runtime
from tests.fake_fal import FakeFalServer
from tests.stack import redis_url, running_worker, scratch_database, serving

# One queue per test run, so test runs side by side on one Redis never share messages.
RUN_QUEUE = f"naive-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    with scratch_database() as url:
        yield url


@pytest.fixture(scope="session")
def test_env(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment shared by the worker process and the in-test API."""
    return {
        "NAIVE_DATA_DIR": str(tmp_path_factory.mktemp("naive-data")),
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": redis_url(11),
        "CELERY_QUEUE": RUN_QUEUE,
        "POLL_INITIAL_SECONDS": "0.2",
        "POLL_MAX_SECONDS": "1",
        "SIMULATOR_LATENCY_SECONDS": "2",
        "SECRET_KEY": "test-secret",
        "RATE_LIMIT": "100000 per minute",
        "RATE_LIMIT_AUTH_FAILURES": "100000 per minute",  # every test client is 127.0.0.1
        "CATALOG_CACHE_SECONDS": "0",
        "SUBMIT_RETRY_SECONDS": "3",
        # A test's workers run without beat unless it starts one (tests/test_recovery.py),
        # and nothing else sends a parked poll: here every poll is a countdown message.
        "POLL_HORIZON_SECONDS": "3600",
        # Customer webhooks go to a receiver on this machine, and retry in seconds.
        "WEBHOOK_ALLOW_PRIVATE_URLS": "1",
        "WEBHOOK_RETRY_SCHEDULE": "0.3,0.3,0.3,0.3",
    }


@pytest.fixture(scope="session")
def settings(test_env: dict[str, str]) -> Settings:
    return load_settings(test_env)


@pytest.fixture(scope="session")
def runtime(settings: Settings) -> Iterator[Runtime]:
    built = Runtime(settings)
    yield built
    built.db.dispose()


@pytest.fixture(scope="session")
def celery_sender(settings: Settings) -> Celery:
    """Sends to the same queue the worker consumes (as the API and the dispatcher do)."""
    return make_celery(settings)


@pytest.fixture(scope="session")
def worker_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worker") / "worker.log"


@pytest.fixture(scope="session")
def worker(test_env: dict[str, str], worker_log: Path) -> Iterator[None]:
    with running_worker(test_env, worker_log):
        yield


@pytest.fixture(scope="session")
def app(settings: Settings, worker: None) -> Iterator[Flask]:
    flask_app = create_app(settings)
    yield flask_app
    flask_app.extensions["naive"].db.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, runtime: Runtime, tmp_path: Path) -> Iterator[Database]:
    """Each test that asks for it runs twice: on the test run's PostgreSQL and on a fresh
    SQLite file (the embedded default)."""
    if request.param == "postgresql":
        yield runtime.db
        return
    url = f"sqlite:///{tmp_path / 'naive.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def make_app(test_env: dict[str, str], worker: None) -> Iterator[Callable[..., Flask]]:
    """An API with some settings changed, e.g. a broker nobody consumes, or short deadlines."""
    made: list[Flask] = []

    def make(**overrides: str) -> Flask:
        made.append(create_app(load_settings({**test_env, **overrides})))
        return made[-1]

    yield make
    for flask_app in made:
        flask_app.extensions["naive"].db.dispose()


@pytest.fixture(scope="session")
def idle_app(make_app: Callable[..., Flask]) -> Flask:
    """Its messages go to a queue no worker reads, as if the broker had lost them."""
    return make_app(CELERY_QUEUE=f"{RUN_QUEUE}-idle")


@pytest.fixture(scope="session")
def live_api(app: Flask) -> Iterator[str]:
    """The API over real HTTP, for tests of concurrent clients and of the CLI."""
    with serving(app) as url:
        yield url


@dataclass(frozen=True)
class TestAccount:
    id: uuid.UUID
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture
def make_account(runtime: Runtime) -> Callable[..., TestAccount]:
    def make(credits: str = "100") -> TestAccount:
        with runtime.db.transaction() as session:
            created = accounts.create_account(
                session=session, name="test", credits=Decimal(credits)
            )
        return TestAccount(created.account_id, created.api_key)

    return make


@pytest.fixture
def account(make_account: Callable[..., TestAccount]) -> TestAccount:
    return make_account()


FAL_KEY = "fal-test-key"


@pytest.fixture(scope="module")
def fake_fal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFalServer]:
    """A fake fal server for the module's tests (renders take 2 s; webhook retries 0.3 s)."""
    server = FakeFalServer(
        tmp_path_factory.mktemp("fake-fal"),
        FAL_KEY,
        latency_seconds=2,
        webhook_retry_seconds=0.3,
    )
    server.start()
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))  # our JWKS fetch and downloads
    yield server
    monkeypatch.undo()
    server.stop()
