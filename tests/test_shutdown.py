"""SIGTERM to a worker in the middle of a job loses nothing: Celery's warm shutdown
finishes the running task and hands the poll loop's pending message back to Redis."""

from __future__ import annotations

import signal
import uuid

from services.worker.celery_app import SUBMIT_JOB
from shared.jobs.models import Job
from tests.helpers import generate, job_entries, wait_for_job
from tests.stack import running_worker
from tests.waiting import wait_for


def test_sigterm_mid_job_loses_nothing(make_app, test_env, account, runtime, tmp_path):
    queue = f"{test_env['CELERY_QUEUE']}-shutdown"
    env = {**test_env, "CELERY_QUEUE": queue}
    client = make_app(CELERY_QUEUE=queue).test_client()

    with running_worker(env, tmp_path / "first.log") as first:
        accepted = generate(client, account, "Interrupted [sim latency=6]")
        job_id = uuid.UUID(accepted["job_id"])

        def polling() -> bool:
            with runtime.db.transaction() as session:
                return session.get_one(Job, job_id).poll_count > 0

        wait_for(polling, timeout=30)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=60) == 0  # a warm shutdown, not a crash
    assert "Warm shutdown" in (tmp_path / "first.log").read_text()
    assert wait_for_job(client, account, accepted["job_id"], statuses=("processing",))

    with running_worker(env, tmp_path / "second.log"):
        job = wait_for_job(client, account, accepted["job_id"], timeout=60)
    assert job["status"] == "completed"
    assert job_entries(runtime, accepted["job_id"]) == {"hold": [350], "capture": [350]}
    assert f"Task {SUBMIT_JOB}[" not in (tmp_path / "second.log").read_text()  # resumed
