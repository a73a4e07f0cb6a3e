"""Small helpers the API tests share: submit a job, wait for it, read the ledger."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from flask.testing import FlaskClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from shared import catalog
from shared.config import Settings
from shared.db import utcnow
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import JobCreate
from shared.jobs.status import JobStatus
from shared.ledger import service as ledger
from shared.ledger.models import LedgerEntry
from shared.providers.base import provider_arguments
from shared.runtime import Runtime
from shared.webhooks import deliveries
from tests.fake_fal import FakeFalServer
from tests.waiting import wait_for

KLING_T2V = "fal-ai/kling-video/v3/pro/text-to-video"
KLING_I2V = "fal-ai/kling-video/v3/pro/image-to-video"
FINAL = ("completed", "failed", "cancelled")


@dataclass(frozen=True)
class HttpResponse:
    status_code: int
    json: Any


class HttpApi:
    """The part of a FlaskClient that tests.helpers uses, over real HTTP."""

    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    def post(self, path: str, **kwargs: Any) -> HttpResponse:
        return self._wrap(self.http.post(path, **kwargs))

    def get(self, path: str, **kwargs: Any) -> HttpResponse:
        return self._wrap(self.http.get(path, **kwargs))

    @staticmethod
    def _wrap(response: httpx.Response) -> HttpResponse:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        return HttpResponse(response.status_code, body)


def generate(
    client: FlaskClient, account: Any, prompt: str, *, model: str = KLING_T2V, **inputs: Any
) -> dict[str, Any]:
    response = client.post(
        "/v1/video/generate",
        json={"model": model, "input": {"prompt": prompt, **inputs}},
        headers=account.headers,
    )
    assert response.status_code == 202, response.json
    return response.json


def get_job(client: FlaskClient, account: Any, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    assert response.status_code == 200, response.json
    return response.json


def wait_for_job(
    client: FlaskClient,
    account: Any,
    job_id: str,
    statuses: tuple[str, ...] = FINAL,
    timeout: float = 60,
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(get_job(client, account, job_id))
        return dict(last) if last["status"] in statuses else None

    return wait_for(reached, timeout=timeout, interval=0.1, message=lambda: str(last))


def new_job(
    session: Session, settings: Settings, account_id: uuid.UUID, prompt: str = "A lighthouse in fog"
) -> Job:
    """A job created by the service alone (no API, no worker) in the caller's transaction,
    as a submit leaves it."""
    return jobs.create_job(
        session=session,
        settings=settings,
        catalog=catalog.BUILTIN,
        provider_name="simulator",
        account_id=account_id,
        request=JobCreate(model=KLING_T2V, input={"prompt": prompt}),
        idempotency_key=None,
    ).job


def queued_job(
    runtime: Runtime, settings: Settings, account_id: uuid.UUID, prompt: str = "A lighthouse in fog"
) -> Job:
    """`new_job` in a transaction of its own."""
    with runtime.db.transaction() as session:
        return new_job(session, settings, account_id, prompt)


# What the simulator reports of a stalled render long under way (`[sim stall]`).
STALLED_PROGRESS = 90
STALLED_LOGS = [{"message": "Model loaded", "level": "INFO", "source": "simulator"}]


def stalled_renders(
    runtime: Runtime, settings: Settings, account_id: uuid.UUID, count: int, token: str
) -> list[uuid.UUID]:
    """`count` jobs at the simulator, rendering for ever and expected to take 10 minutes,
    whose progress and logs are already stored as the simulator reports them, and whose
    poll is the dispatcher's to send with `token` (as `claim_parked` leaves them): a poll
    of one writes a plain report and parks the next poll about 10 minutes out."""
    ids = []
    for _ in range(count):
        job = queued_job(runtime, settings, account_id, "Stalled [sim stall latency=600]")
        model = catalog.get_model(job.model)
        request_id = runtime.provider.submit(model, provider_arguments(model, job.input))
        record = settings.simulator_root / "requests" / f"{request_id}.json"
        started = json.loads(record.read_text())
        record.write_text(json.dumps({**started, "submitted_at": time.time() - 1000}))
        with runtime.db.transaction() as session:
            assert jobs.claim_submit(connection=session.connection(), job_id=job.id)
            assert jobs.record_submitted(
                session=session,
                job_id=job.id,
                request_id=request_id,
                poll_token=None,
                poll_in=600,
                expected_seconds=600,
            )
        ids.append(job.id)
    with runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id.in_(ids))
            .values(
                status=JobStatus.RUNNING,
                progress=STALLED_PROGRESS,
                provider_logs=STALLED_LOGS,
                poll_token=token,
            )
        )
    return ids


def job_entries(runtime: Runtime, job_id: str) -> dict[str, list[int]]:
    """The job's ledger entries by kind, amounts in hundredths of a credit."""
    with runtime.db.transaction() as session:
        rows = session.execute(
            select(LedgerEntry.kind, LedgerEntry.amount).where(
                LedgerEntry.job_id == uuid.UUID(job_id)
            )
        ).all()
    kinds: dict[str, list[int]] = {}
    for kind, amount in rows:
        kinds.setdefault(kind, []).append(amount)
    return kinds


def balance(runtime: Runtime, account: Any) -> ledger.Balance:
    with runtime.db.transaction() as session:
        return ledger.balance(session=session, account_id=account.id)


def wait_task_done(worker_log: Path, task_id: str, timeout: float = 30) -> None:
    """Wait until the worker logged the end of one task (however it ended)."""
    wait_for(
        lambda: re.search(rf"\[{task_id}\] (succeeded|retry|raised)", worker_log.read_text()),
        timeout=timeout,
        message=f"task {task_id} never finished",
    )


def fal_stats(fake: FakeFalServer, request_id: str) -> dict[str, Any]:
    """What the fake fal server counted for one request (calls, webhook deliveries, …)."""
    return httpx.get(f"{fake.base_url}/_fake/stats").json()["requests"][request_id]


def tagged(prompt: str) -> str:
    """A prompt no other test sends (the fake counts faults per request body)."""
    return f"{prompt} #{uuid.uuid4().hex[:8]}"


def fan_out_everything(runtime: Runtime, session: Session) -> None:
    """Take every job event still in the outbox into deliveries, as the dispatcher does
    (earlier events left by other tests go first)."""
    links = deliveries.media_links(runtime.settings, runtime.storage)
    while deliveries.fan_out(session=session, now=utcnow(), links=links):
        pass


def naive_admin(test_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """`naive` through its real entry point, on the tests' database (operator commands)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("NAIVE_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env={**env, **test_env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
