"""Fair scheduling on the real stack: a provider capacity of 4 shared fairly across
accounts, and an account's own cap (a worker of its own, on its own queue)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from shared import accounts
from shared.config import load_settings
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from shared.metrics import SchedulingCollector
from shared.runtime import Runtime
from tests import conftest
from tests.conftest import RUN_QUEUE
from tests.stack import running_worker
from tests.waiting import wait_for

CAPACITY = 4
PROMPT = {"prompt": "A lighthouse at dusk", "duration": "5"}
MODEL = "fal-ai/kling-video/v3/pro/text-to-video"


@pytest.fixture(scope="module")
def fair_env(test_env: dict[str, str]) -> dict[str, str]:
    return {
        **test_env,
        "CELERY_QUEUE": f"{RUN_QUEUE}-fair",
        "PROVIDER_CONCURRENCY": str(CAPACITY),
        "SIMULATOR_LATENCY_SECONDS": "2",
    }


@pytest.fixture(scope="module")
def fair_worker(
    fair_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    log = tmp_path_factory.mktemp("fair-worker") / "worker.log"
    with running_worker(fair_env, log, concurrency=4):
        yield log


@pytest.fixture(scope="module")
def fair_client(
    make_app: Callable[..., Flask], fair_env: dict[str, str], fair_worker: Path
) -> FlaskClient:
    overrides = {name: fair_env[name] for name in ("CELERY_QUEUE", "PROVIDER_CONCURRENCY")}
    return make_app(**overrides).test_client()


def submit(
    client: FlaskClient, account: conftest.TestAccount, count: int, prompt: str = PROMPT["prompt"]
) -> list[str]:
    ids = []
    for _ in range(count):
        answer = client.post(
            "/v1/video/generate",
            json={"model": MODEL, "input": {**PROMPT, "prompt": prompt}},
            headers=account.headers,
        )
        assert answer.status_code == 202, answer.get_json()
        ids.append(answer.get_json()["job_id"])
    return ids


def rows(runtime: Runtime, ids: list[str]) -> list[Job]:
    with runtime.db.transaction() as session:
        found = session.scalars(select(Job).where(Job.id.in_([uuid.UUID(i) for i in ids])))
        return list(found)


def most_at_once(jobs: list[Job]) -> int:
    """The most of `jobs` at the provider at one moment (accepted, not yet delivered)."""
    moments: list[tuple[datetime, int]] = []
    for job in jobs:
        if job.started_at is None:
            continue
        moments.append((job.started_at, 1))
        left = job.provider_completed_at or job.completed_at  # delivered, or ended there
        if left is not None:
            moments.append((left, -1))
    at_once = most = 0
    for _, step in sorted(moments, key=lambda moment: (moment[0], moment[1])):
        at_once += step
        most = max(most, at_once)
    return most


def cancel_waiting(client: FlaskClient, account: conftest.TestAccount, ids: list[str]) -> None:
    for job_id in ids:
        client.delete(f"/v1/jobs/{job_id}", headers=account.headers)


def all_final(runtime: Runtime, ids: list[str]) -> bool:
    return all(job.status.is_terminal for job in rows(runtime, ids))


def test_a_small_account_is_served_between_a_big_ones_jobs(
    fair_client: FlaskClient, make_account: Callable[..., conftest.TestAccount], runtime: Runtime
) -> None:
    big, small = make_account("1000"), make_account()
    # Renders long enough that the small account has submitted before the big one's first
    # four end, however loaded the machine (else those four would rightly go to the big one).
    slow = "A lighthouse at dusk [sim latency=6]"
    big_ids = submit(fair_client, big, 40, slow)
    small_ids = submit(fair_client, small, 4, slow)
    with runtime.db.transaction() as session:
        first_done = session.scalar(
            select(func.min(Job.provider_completed_at)).where(
                Job.id.in_([uuid.UUID(i) for i in big_ids])
            )
        )
    assert first_done is None, "the machine is too slow for this scenario"

    def eight_of_big_admitted() -> list[Job] | None:
        admitted = [job for job in rows(runtime, big_ids) if job.admitted_at is not None]
        return admitted if len(admitted) >= 8 else None

    # The small account's k-th job gets a slot no later than the big one's (k + 4)-th: the
    # big one's 4 running jobs are its head start. (Jobs given slots in one round share the time of
    # the round; which of them the provider accepts first is the workers' race.)
    admitted = wait_for(eight_of_big_admitted, timeout=90, message="8 of the big account's jobs")
    eighth = sorted(job.admitted_at for job in admitted if job.admitted_at)[7]
    small_jobs = rows(runtime, small_ids)
    assert all(job.admitted_at is not None and job.admitted_at <= eighth for job in small_jobs), [
        (job.admitted_at, eighth) for job in small_jobs
    ]

    # A job still waiting says why and where it stands.
    waiting = next(job for job in rows(runtime, big_ids) if job.admitted_at is None)
    shown = fair_client.get(f"/v1/jobs/{waiting.id}", headers=big.headers).get_json()
    assert shown["status"] == "queued" and shown["throttled_by"] == "provider"
    assert shown["queue_position"] >= 1 and shown["started_at"] is None

    cancel_waiting(fair_client, big, big_ids)
    wait_for(lambda: all_final(runtime, big_ids + small_ids), timeout=60, message="all final")
    everything = rows(runtime, big_ids + small_ids)
    assert most_at_once(everything) <= CAPACITY
    assert all(job.status is not JobStatus.FAILED for job in everything)


def test_an_account_cap_holds_and_shows(
    fair_client: FlaskClient, make_account: Callable[..., conftest.TestAccount], runtime: Runtime
) -> None:
    capped = make_account()
    with runtime.db.transaction() as session:
        accounts.set_scheduling(session=session, account_id=capped.id, concurrency_cap=2)
    ids = submit(fair_client, capped, 6)

    def one_waits_for_the_account() -> dict[str, object] | None:
        for job_id in ids:
            shown = fair_client.get(f"/v1/jobs/{job_id}", headers=capped.headers).get_json()
            if shown["throttled_by"] == "account":
                return shown
        return None

    shown = wait_for(one_waits_for_the_account, timeout=30, message="a job waiting on its cap")
    assert shown["status"] == "queued" and shown["queue_position"] >= 1
    gauges = {
        family.name: {tuple(sample.labels.values()): sample.value for sample in family.samples}
        for family in SchedulingCollector(runtime.db, CAPACITY).collect()
    }
    assert gauges["naive_jobs_waiting"].get((str(capped.id), "account"), 0) >= 1
    assert 1 <= gauges["naive_provider_slots_in_use"][("simulator",)] <= CAPACITY
    assert gauges["naive_provider_capacity"] == {(): CAPACITY}

    wait_for(lambda: all_final(runtime, ids), timeout=120, message="the capped jobs end")
    finished = rows(runtime, ids)
    assert all(job.status is JobStatus.COMPLETED for job in finished)
    assert most_at_once(finished) <= 2
    assert all(job.started_at is not None for job in finished)


def test_concurrency_settings_are_checked() -> None:
    settings = load_settings({"PROVIDER_CONCURRENCY": "8", "MODEL_CONCURRENCY": "a/b=2, c=1"})
    assert settings.provider_concurrency == 8
    assert dict(settings.model_concurrency) == {"a/b": 2, "c": 1}
    for bad in ({"PROVIDER_CONCURRENCY": "0"}, {"MODEL_CONCURRENCY": "a/b"}):
        with pytest.raises(ValueError):
            load_settings(bad)
