"""Faults on the real stack: workers killed with SIGKILL, Redis flushed and restarted,
PostgreSQL restarted, the provider down for a while.

Every scenario runs its own worker(s) on its own queue of a Redis server private to this
module (so flushing and restarting it disturbs nobody else), submits jobs through the
API, injects the fault, lets the dispatcher do its job, and then checks the invariants of
`tests/invariants.py`: every job final, every completed job charged once and ingested
once, every other job released, each account's ledger balanced to the cent.

A Redis restart used to make the Celery worker exit (kombu's Redis channel, worked around in
`services/worker/redis_transport.py`): one scenario runs its worker supervised, as production
does, and another proves that a worker survives the restarts on its own.

The PostgreSQL restart stops a PostgreSQL server that the test starts itself
(`tests.stack.PrivatePostgres`: stop, check the API while it is down, start); a test never
stops or restarts a service it did not start, so the machine's server is never touched.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from services.worker.celery_app import make_celery
from services.worker.dispatcher import dispatch
from shared import accounts
from shared.config import Settings, load_settings
from shared.db import utcnow
from shared.jobs.models import Job
from shared.runtime import Runtime
from tests.fake_fal import FakeFalServer
from tests.helpers import KLING_T2V
from tests.invariants import FINAL, Summary, assert_invariants, job_statuses, unfinished
from tests.stack import PrivatePostgres, PrivateRedis, fal_env, kill_tree, running_worker
from tests.waiting import wait_for

AT_PROVIDER = ("submitted", "running")
GRANT_CREDITS = 1000
# Quick loops for the simulator scenarios. The settings insist on VISIBILITY ≥ 12 × POLL_MAX.
FAST = {
    "POLL_INITIAL_SECONDS": "0.2",
    "POLL_MAX_SECONDS": "0.5",
    "DISPATCH_GRACE_SECONDS": "1",
    "VISIBILITY_TIMEOUT_SECONDS": "60",
    "RATE_LIMIT": "100000 per minute",
}


# ---- processes ---------------------------------------------------------------------------


def kill_worker(process: subprocess.Popen[bytes]) -> int:
    """SIGKILL a Celery worker and its prefork children, as an OOM kill or a lost node would.
    Returns how many processes were killed."""
    killed = kill_tree(process.pid)
    process.wait(timeout=30)
    return killed


# ---- one scenario's stack ------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    env: dict[str, str]
    settings: Settings
    runtime: Runtime
    sender: Celery
    app: Flask
    client: FlaskClient
    account_id: uuid.UUID
    headers: dict[str, str]
    folder: Path
    job_ids: list[str] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)  # job id → the unique tag in its prompt
    swept: int = 0
    _logs: Iterator[int] = field(default_factory=itertools.count)

    def worker_log(self) -> Path:
        return self.folder / f"worker-{next(self._logs)}.log"

    def submit(self, prompt: str, *, model: str = KLING_T2V, **inputs: Any) -> str:
        tag = uuid.uuid4().hex[:10]
        response = self.client.post(
            "/v1/video/generate",
            json={
                "model": model,
                "input": {"prompt": f"{prompt} #{tag}", "duration": "3", **inputs},
            },
            headers=self.headers,
        )
        assert response.status_code == 202, response.json
        job_id = response.json["job_id"]
        self.job_ids.append(job_id)
        self.tags[job_id] = tag
        return job_id

    def submit_batch(self, prompts: list[str]) -> list[str]:
        tags = [uuid.uuid4().hex[:10] for _ in prompts]
        items = [
            {"model": KLING_T2V, "input": {"prompt": f"{prompt} #{tag}", "duration": "3"}}
            for prompt, tag in zip(prompts, tags, strict=True)
        ]
        response = self.client.post(
            "/v1/video/batches", json={"items": items}, headers=self.headers
        )
        assert response.status_code == 202, response.json
        job_ids = [str(job_id) for job_id in response.json["job_ids"]]
        self.job_ids += job_ids
        self.tags.update(zip(job_ids, tags, strict=True))
        return job_ids

    def statuses(self) -> dict[str, str]:
        return job_statuses(self.runtime, self.job_ids)

    def count(self, states: tuple[str, ...]) -> int:
        return sum(status in states for status in self.statuses().values())

    def dispatch_as_if_later(self) -> int:
        """One dispatch as beat would run it a minute from now: every unfinished job is due,
        so each gets its next message again (duplicates are harmless)."""
        later = utcnow() + timedelta(seconds=60)
        acted = dispatch(self.runtime, self.sender, now=later)
        self.swept += acted
        return acted

    def wait_all_final(self, timeout: float) -> None:
        """Wait until every job is final, with no help but what runs (workers, Beat)."""
        wait_for(
            lambda: not unfinished(self.runtime, self.job_ids),
            timeout=timeout,
            interval=0.2,
            message=lambda: f"unfinished: {unfinished(self.runtime, self.job_ids)}",
        )

    def drive_to_final(self, timeout: float) -> None:
        """Wait until every job is final, dispatching (as if a minute later) every few seconds."""
        last_dispatch = [time.monotonic()]

        def all_final() -> bool:
            if not unfinished(self.runtime, self.job_ids):
                return True
            if time.monotonic() - last_dispatch[0] >= 3:
                last_dispatch[0] = time.monotonic()
                self.dispatch_as_if_later()
            return False

        wait_for(
            all_final,
            timeout=timeout,
            interval=0.2,
            message=lambda: f"unfinished: {unfinished(self.runtime, self.job_ids)}",
        )

    def check(self) -> Summary:
        summary = assert_invariants(
            self.runtime, {self.account_id: GRANT_CREDITS * 100}, self.job_ids
        )
        print(f"\n[{self.name}] {len(self.job_ids)} jobs: {summary}; dispatched {self.swept}×")
        return summary


class Beat:
    """The dispatcher on its schedule, in a thread, as the `beat` process runs it.

    Failures (the database or the broker down) are counted, never raised: beat keeps going.
    """

    def __init__(self, scenario: Scenario, interval: float = 1.0) -> None:
        self.scenario = scenario
        self.interval = interval
        self.acted = 0
        self.failures: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="beat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                acted = dispatch(self.scenario.runtime, self.scenario.sender, now=utcnow())
            except Exception as exc:  # beat survives outages
                self.failures[type(exc).__name__] += 1
                continue
            self.acted += acted
            self.scenario.swept += acted

    def __enter__(self) -> Beat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


_databases = itertools.count(1)


@pytest.fixture
def make_scenario(
    make_app: Callable[..., Flask],
    test_env: dict[str, str],
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> Iterator[Callable[..., Scenario]]:
    """A scenario's own queue and Redis database number, its API, dispatcher and account (made
    in the scenario's own database: a DATABASE_URL override points all of them elsewhere)."""
    made: list[Scenario] = []

    def make(name: str, **overrides: str) -> Scenario:
        changes = {
            **FAST,
            "CELERY_BROKER_URL": private_redis.url(next(_databases) % 16),
            "CELERY_QUEUE": f"faults-{name}-{uuid.uuid4().hex[:8]}",
            **overrides,
        }
        env = {**test_env, **changes}
        settings = load_settings(env)
        app = make_app(**changes)
        runtime = Runtime(settings)
        with runtime.db.transaction() as session:
            account = accounts.create_account(
                session=session, name="test", credits=Decimal(GRANT_CREDITS)
            )
        scenario = Scenario(
            name=name,
            env=env,
            settings=settings,
            runtime=runtime,
            sender=make_celery(settings),
            app=app,
            client=app.test_client(),
            account_id=account.account_id,
            headers={"Authorization": f"Bearer {account.api_key}"},
            folder=tmp_path,
        )
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.runtime.db.dispose()


def _simulator_submissions(settings: Settings) -> Counter[str]:
    """How many times the simulator was asked to render each prompt tag."""
    tags: Counter[str] = Counter()
    for path in (settings.simulator_root / "requests").glob("*.json"):
        try:
            prompt = str(json.loads(path.read_text())["arguments"])
        except (OSError, ValueError, KeyError):
            continue  # a record being written right now
        tags.update(re.findall(r"#([0-9a-f]{10})", prompt))
    return tags


def _assert_submitted_at_most_once(scenario: Scenario) -> None:
    counts = _simulator_submissions(scenario.settings)
    twice = {job: counts[tag] for job, tag in scenario.tags.items() if counts[tag] > 1}
    assert not twice, f"submitted to the provider more than once: {twice}"


# ---- 1. kill -9 --------------------------------------------------------------------------

PHASES = {
    "polling": AT_PROVIDER,
    "settling": ("settling",),
    "ingesting": ("ingesting",),
}


def _watch_then_kill(
    scenario: Scenario, process: subprocess.Popen[bytes], states: tuple[str, ...], timeout: float
) -> Counter[str]:
    """Watch the jobs' state in the database; SIGKILL the worker as soon as a job has moved
    into one of `states` under this worker (or after `timeout`). Returns the states that jobs
    reached under this worker and were in when it was killed."""
    before = scenario.statuses()
    deadline = time.monotonic() + timeout
    while True:
        now = scenario.statuses()
        moved = Counter(
            status
            for job, status in now.items()
            if status not in FINAL and status != before.get(job)
        )
        if any(moved[state] for state in states) or time.monotonic() > deadline:
            kill_worker(process)
            return moved
        time.sleep(0.005)


def test_kill_9_workers_while_polling_settling_and_ingesting(make_scenario):
    scenario = make_scenario("kill9")
    for i in range(20):
        scenario.submit(f"Killed {i} [sim latency={1 + (i % 10) * 0.4:.1f}]")

    kills: list[tuple[str, Counter[str]]] = []
    hit: Counter[str] = Counter()
    targets = itertools.cycle(PHASES)
    started = time.monotonic()
    with Beat(scenario):
        while True:
            elapsed = time.monotonic() - started
            missing = [phase for phase in PHASES if not hit[phase]]
            if (elapsed > 15 and not missing) or elapsed > 90:
                break
            if len(unfinished(scenario.runtime, scenario.job_ids)) < 6:
                for i in range(10):  # keep jobs flowing until every phase was hit
                    scenario.submit(f"Killed more {i} [sim latency={1 + i * 0.3:.1f}]")
            target = missing[0] if missing and elapsed > 6 else next(targets)
            with running_worker(scenario.env, scenario.worker_log(), concurrency=4) as process:
                seen = _watch_then_kill(scenario, process, PHASES[target], timeout=3.0)
            kills.append((target, seen))
            for phase, states in PHASES.items():
                hit[phase] += any(seen[state] for state in states)

    print(f"\n[kill9] {len(kills)} kills in {time.monotonic() - started:.1f}s")
    for target, seen in kills:
        print(f"  aimed at {target:9s} killed with jobs just moved into {dict(seen)}")
    assert all(hit[phase] for phase in PHASES), f"no kill landed in some phase: {hit}"

    with running_worker(scenario.env, scenario.worker_log(), concurrency=4):
        scenario.drive_to_final(timeout=120)
    summary = scenario.check()
    _assert_submitted_at_most_once(scenario)
    # A kill between "attempt recorded" and "provider answered" fails the job on purpose
    # (never risk paying twice); every other job must have completed.
    with scenario.runtime.db.transaction() as session:
        mine = Job.account_id == scenario.account_id
        errors = session.scalars(select(Job.error).where(mine, Job.status != "completed")).all()
    unexplained = [error for error in errors if "outcome is unknown" not in str(error)]
    assert not unexplained, (summary, unexplained)
    print(f"  {len(errors)} job(s) failed on purpose: killed between submit attempt and answer")


def test_kill_9_and_flushall_while_jobs_wait_for_capacity(make_scenario, private_redis):
    """Fair scheduling under faults: with a capacity of 3, single jobs and a batch wait in
    our queue while workers are killed and Redis is flushed; every job still ends, each
    submitted once, never more than 3 at the provider, the batch's hold settled in full."""
    scenario = make_scenario("fair", PROVIDER_CONCURRENCY="3")
    for i in range(6):
        scenario.submit(f"Waiting {i} [sim latency={1 + i * 0.3:.1f}]")
    scenario.submit_batch([f"Batch item {i} [sim latency=1]" for i in range(4)])
    with Beat(scenario):
        for round_ in range(3):
            with running_worker(scenario.env, scenario.worker_log()) as process:
                wait_for(
                    lambda: scenario.count(AT_PROVIDER) >= 1, timeout=30, message="at provider"
                )
                time.sleep(0.3 * round_)  # land the kills at different moments
                kill_worker(process)
            if round_ == 1:
                private_redis.flushall()
        with running_worker(scenario.env, scenario.worker_log()):
            scenario.wait_all_final(timeout=120)
    summary = scenario.check()
    _assert_submitted_at_most_once(scenario)
    with scenario.runtime.db.transaction() as session:
        spans = session.execute(
            select(Job.started_at, Job.provider_completed_at).where(
                Job.account_id == scenario.account_id, Job.started_at.is_not(None)
            )
        ).all()
    moments = sorted(
        [(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans if end is not None]
    )
    at_once = [sum(step for _, step in moments[: i + 1]) for i in range(len(moments))]
    assert max(at_once) <= 3, moments
    assert summary.statuses["completed"] + summary.statuses["failed"] == 10, summary


# ---- 2. every message flushed from Redis -----------------------------------------------------


def test_flushall_mid_flight_loses_no_job(make_scenario, private_redis):
    scenario = make_scenario("flush")
    with running_worker(scenario.env, scenario.worker_log()) as _, Beat(scenario) as beat:
        for i in range(10):
            scenario.submit(f"Flushed {i} [sim latency={2 + i * 0.4:.1f}]")
        wait_for(lambda: scenario.count(AT_PROVIDER) >= 5, timeout=30)
        at_flush = Counter(scenario.statuses().values())
        flushed = private_redis.flushall()
        scenario.wait_all_final(timeout=90)
    print(f"\n[flush] live FLUSHALL dropped {flushed} keys with jobs in {dict(at_flush)}; ")
    print(f"        beat revived {beat.acted}, beat failures {dict(beat.failures)}")
    summary = scenario.check()
    assert summary.statuses["completed"] == 10, summary
    _assert_submitted_at_most_once(scenario)


def test_flushall_while_no_worker_holds_the_messages(make_scenario, private_redis):
    """The strict form: every message of every unfinished job is gone for sure (a live
    worker keeps countdown messages in memory, so a live FLUSHALL may lose few)."""
    scenario = make_scenario("flush-all")
    with running_worker(scenario.env, scenario.worker_log()):
        for i in range(10):
            scenario.submit(f"Flushed for sure {i} [sim latency={3 + i * 0.3:.1f}]")
        wait_for(lambda: scenario.count(AT_PROVIDER) >= 6, timeout=30)
    # The worker's warm shutdown hands its unacknowledged messages back to Redis; gone now.
    flushed = private_redis.flushall()
    assert private_redis.keys() == 0
    lost = unfinished(scenario.runtime, scenario.job_ids)
    assert lost, "every job finished before the flush: nothing was tested"
    with running_worker(scenario.env, scenario.worker_log()), Beat(scenario) as beat:
        scenario.wait_all_final(timeout=90)
    print(f"\n[flush-all] FLUSHALL dropped {flushed} keys; {len(lost)} jobs had no message left")
    print(f"            {dict(Counter(lost.values()))}; beat revived {beat.acted}")
    assert beat.acted >= len(lost)
    summary = scenario.check()
    assert summary.statuses["completed"] == 10, summary
    _assert_submitted_at_most_once(scenario)


# ---- 3. Redis restarted --------------------------------------------------------------------


# celery 5.7.0 + kombu 5.7.0 without our workaround: on a lost Redis connection the worker
# logs this (AttributeError 'NoneType' object has no attribute 'hostname') and exits 1; see
# docs/upstream-kombu-redis-restart.md.
CRASH = "Unrecoverable error"


def test_redis_restart_mid_flight(make_scenario, private_redis):
    """Redis restarted (without persistence: every message gone) while jobs are polling.

    The workers run supervised, as Kubernetes or a Procfile platform runs them: a worker
    process that exits is started again (see the next test: it no longer should)."""
    scenario = make_scenario("redis-restart")
    restarts = 0
    with ExitStack() as stack, Beat(scenario) as beat:
        worker = stack.enter_context(running_worker(scenario.env, scenario.worker_log()))
        for i in range(10):
            scenario.submit(f"Redis restart {i} [sim latency={2 + i * 0.4:.1f}]")
        wait_for(lambda: scenario.count(AT_PROVIDER) >= 5, timeout=30)
        at_restart = Counter(scenario.statuses().values())
        private_redis.stop()
        # The broker is down: the API still takes jobs (their messages are sent later).
        for i in range(2):
            scenario.submit(f"During the outage {i} [sim latency=1]")
        private_redis.start()

        def all_final_under_supervision() -> bool:
            nonlocal worker, restarts
            if worker.poll() is not None:
                restarts += 1
                worker = stack.enter_context(running_worker(scenario.env, scenario.worker_log()))
            return not unfinished(scenario.runtime, scenario.job_ids)

        wait_for(
            all_final_under_supervision,
            timeout=90,
            interval=0.2,
            message=lambda: f"unfinished: {unfinished(scenario.runtime, scenario.job_ids)}",
        )
    print(f"\n[redis-restart] jobs at the restart {dict(at_restart)}; beat revived {beat.acted}")
    print(f"                worker restarted by the supervisor {restarts}×")
    print(f"                beat failures during the outage {dict(beat.failures)}")
    summary = scenario.check()
    assert summary.statuses["completed"] == 12, summary
    _assert_submitted_at_most_once(scenario)


def test_a_worker_survives_redis_restarts(make_scenario, private_redis):
    """A worker holding poll countdowns must reconnect after Redis comes back, not exit.

    Three restarts, each while the worker holds countdown messages (the first polls of jobs
    just submitted, due when their render is expected to end): without the workaround of
    `services/worker/redis_transport.py` the worker exits at nearly every one."""
    scenario = make_scenario("redis-survive")
    log = scenario.worker_log()
    held = "naive.poll_job["  # "Task naive.poll_job[…] received": a first poll, due in ~8 s

    def polls_received() -> int:
        return sum(held in line and "received" in line for line in log.read_text().splitlines())

    def seen(text: str, times: int) -> Callable[[], bool]:
        return lambda: log.read_text().count(text) >= times

    with running_worker(scenario.env, log) as worker, Beat(scenario):

        def crashed_or(reconnected: Callable[[], bool]) -> Callable[[], bool]:
            return lambda: worker.poll() is not None or CRASH in log.read_text() or reconnected()

        wait_for(seen("Connected to redis", 1), timeout=30)
        for restart in range(3):
            before = polls_received()
            for i in range(2):
                scenario.submit(f"Survive {restart}.{i} [sim latency=8]")
            wait_for(lambda n=before + 2: polls_received() >= n, timeout=30)  # countdowns held
            private_redis.restart()
            wait_for(
                crashed_or(seen("Connected to redis", 2 + restart)),
                timeout=60,
                message=lambda: log.read_text()[-2000:],
            )
            assert CRASH not in log.read_text() and worker.poll() is None, (
                f"the worker exited ({worker.poll()}) at Redis restart {restart + 1}"
            )
        scenario.wait_all_final(timeout=60)
    summary = scenario.check()
    assert summary.statuses["completed"] == 6, summary


# ---- 5. the provider down for a while --------------------------------------------------------

FAL_KEY = "fal-test-key"


@pytest.fixture(scope="module")
def fake_fal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeFalServer]:
    server = FakeFalServer(tmp_path_factory.mktemp("fake-fal-faults"), FAL_KEY, latency_seconds=2)
    server.start()
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("SSL_CERT_FILE", str(server.ca_file))
    yield server
    monkeypatch.undo()
    server.stop()


def _fal_env(fake: FakeFalServer) -> dict[str, str]:
    return {
        **fal_env(fake),
        # Submit keeps retrying (backoff 0.5 s growing ×1.6 to 3 s) for longer than the outage.
        "SUBMIT_RETRY_SECONDS": "60",
        "POLL_INITIAL_SECONDS": "0.5",
        "POLL_MAX_SECONDS": "3",
        "VISIBILITY_TIMEOUT_SECONDS": "60",
    }


def test_provider_outage_then_back(make_scenario, fake_fal):
    outage_seconds = 5
    scenario = make_scenario("fal-outage", **_fal_env(fake_fal))
    log = scenario.worker_log()
    with running_worker(scenario.env, log):
        for i in range(6):
            # A model with no render history: its polls are paced by POLL_MAX_SECONDS (3 s),
            # so they fall inside the outage (a measured model would wait for its renders).
            scenario.submit(
                f"Before the outage {i} [sim latency={2 + i * 0.3:.1f}]",
                model="fal-ai/kling-video/v3/standard/text-to-video",
            )
        wait_for(lambda: scenario.count(AT_PROVIDER) >= 3, timeout=30)
        httpx.post(
            f"{fake_fal.base_url}/_fake/outage", json={"seconds": outage_seconds, "status": 503}
        ).raise_for_status()
        outage_started = time.monotonic()
        for i in range(6):
            scenario.submit(f"During the outage {i} [sim latency=1.5]")
        assert time.monotonic() - outage_started < outage_seconds  # really during it
        # No dispatcher here: the submit retries and the poll retries alone carry the jobs.
        scenario.wait_all_final(timeout=90)
    text = log.read_text()
    poll_retries = text.count("provider unavailable, polling again later")
    submit_retries = len(re.findall(r"naive\.submit_job\[[^\]]+\] retry", text))
    print(f"\n[fal-outage] {outage_seconds}s of 503: {poll_retries} poll retries,")
    print(f"             {submit_retries} submit retries")
    assert poll_retries > 0 and submit_retries > 0, "the outage was never seen"
    summary = scenario.check()
    assert summary.statuses["completed"] == 12, summary

    stats = httpx.get(f"{fake_fal.base_url}/_fake/stats").json()
    per_tag = Counter(
        tag
        for request in stats["requests"].values()
        for tag in re.findall(r"#([0-9a-f]{10})", str(request["arguments"].get("prompt")))
    )
    assert all(per_tag[tag] == 1 for tag in scenario.tags.values()), per_tag


# ---- 4. PostgreSQL restarted (a server of this test's own) -----------------------------------


@pytest.fixture
def private_postgres(request: pytest.FixtureRequest) -> PrivatePostgres:
    """A PostgreSQL server of this test's own, to stop and start: the machine's server (other
    test runs use it) is never touched. Stopped, and its folder removed, at the end."""
    server = PrivatePostgres()
    request.addfinalizer(server.close)
    server.init()
    server.start()
    return server


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, (response.status_code, response.json)
    assert response.json["error"]["code"] == "unavailable", response.json
    assert int(response.headers["Retry-After"]) > 0


def test_postgres_restart_mid_flight(private_postgres, make_scenario):
    """PostgreSQL stopped ("fast": every client disconnected) and started again while jobs
    are polling; the API, the worker and beat all use the private server."""
    scenario = make_scenario("pg-restart", DATABASE_URL=private_postgres.create_database())
    with running_worker(scenario.env, scenario.worker_log()) as _, Beat(scenario) as beat:
        for i in range(10):
            scenario.submit(f"Postgres restart {i} [sim latency={3 + i * 0.3:.1f}]")
        # Past submit, so no job can be caught between the provider's answer and its record
        # (that case is failed on purpose, and is covered by the kill -9 scenario).
        wait_for(lambda: scenario.count(AT_PROVIDER) == 10, timeout=30)
        some_job = scenario.job_ids[0]
        down_at = time.monotonic()
        try:
            private_postgres.stop("fast")
            assert not private_postgres.ready()
            job_answer = scenario.client.get(f"/v1/jobs/{some_job}", headers=scenario.headers)
            submit_answer = scenario.client.post(
                "/v1/video/generate",
                json={"model": KLING_T2V, "input": {"prompt": "while down", "duration": "3"}},
                headers=scenario.headers,
            )
        finally:
            private_postgres.start()  # the same data folder: everything committed survives
        outage = time.monotonic() - down_at
        _assert_unavailable(job_answer)
        _assert_unavailable(submit_answer)
        for i in range(3):  # and the API takes jobs again at once
            scenario.submit(f"After the restart {i} [sim latency=1]")
        scenario.wait_all_final(timeout=90)
    print(f"\n[pg-restart] PostgreSQL down for {outage:.1f}s; API answered 503 + Retry-After")
    print(f"             beat revived {beat.acted}, beat failures {dict(beat.failures)}")
    summary = scenario.check()
    assert summary.statuses["completed"] == 13, summary
    _assert_submitted_at_most_once(scenario)
