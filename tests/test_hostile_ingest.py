"""Ingest and disks in a hostile world: one download at a time per job, a deadline for
ingesting, files that are not the video they claim to be, a full or broken media disk.

A customer pays only for a video in its library; nothing already stored is lost."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from flask import Flask
from sqlalchemy import update

from services.worker import celery_app as names
from services.worker.dispatcher import dispatch
from shared.config import Settings
from shared.db import utcnow
from shared.jobs import machine
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.status import JobStatus
from shared.media.ingest import IngestError, ingest_video
from shared.media.render import render_video
from shared.media.storage import LocalStorage
from shared.metrics import MediaSpaceCollector
from shared.runtime import Runtime
from tests.helpers import generate, job_entries, wait_for_job
from tests.stack import running_worker
from tests.test_job_service import _delivered
from tests.waiting import wait_for


def _ingesting(runtime: Runtime, settings: Settings, account: Any) -> uuid.UUID:
    job_id = _delivered(runtime, settings, account.id)
    with runtime.db.transaction() as session:
        assert jobs.settle(session=session, job_id=job_id)
    return job_id


def test_one_ingest_runs_at_a_time_per_job(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any]
) -> None:
    """A duplicate message or a re-sent step finds the lease held and leaves the running
    download alone; a failed attempt frees it; a dead worker's lease runs out."""
    job_id = _ingesting(runtime, settings, make_account())
    with runtime.db.transaction() as session:
        connection = session.connection()
        assert jobs.claim_ingest(connection=connection, job_id=job_id) is not None
        assert jobs.claim_ingest(connection=connection, job_id=job_id) is None  # leased
        jobs.retry_ingest(session=session, job_id=job_id, retry_in=1)
        assert jobs.claim_ingest(connection=connection, job_id=job_id) is not None  # freed
        session.execute(  # the worker holding it died a lease ago
            update(Job)
            .where(Job.id == job_id)
            .values(ingest_started_at=utcnow() - machine.INGEST_BUDGET)
        )
        assert jobs.claim_ingest(connection=connection, job_id=job_id) is not None


def test_a_video_not_stored_within_the_ingest_deadline_fails_and_is_refunded(
    runtime: Runtime, settings: Settings, make_account: Callable[..., Any], celery_sender: Celery
) -> None:
    account = make_account()
    job_id = _ingesting(runtime, settings, account)
    now = utcnow()
    with runtime.db.transaction() as session:
        session.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(
                provider_completed_at=now - machine.INGEST_DEADLINE - timedelta(seconds=1),
                due_at=now - timedelta(seconds=5),
            )
        )
    dispatch(runtime, celery_sender, now=now)
    with runtime.db.transaction() as session:
        job = session.get_one(Job, job_id)
        assert job.status is JobStatus.FAILED
        assert job.error is not None and job.error["code"] == "ingest_failed"
    assert job_entries(runtime, str(job_id)) == {"hold": [350], "capture": [350], "refund": [350]}


def test_the_job_reports_our_copys_size_not_the_providers_claim(client: Any, account: Any) -> None:
    accepted = generate(client, account, "Size [sim latency=0.5]")
    job = wait_for_job(client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    asset = client.get(f"/v1/media/{job['result']['media_asset_id']}", headers=account.headers)
    stored = client.get(f"/v1/media/{asset.json['id']}/content", headers=account.headers)
    size = len(stored.data)
    stored.close()  # the file it streams from
    assert job["result"]["video"]["file_size"] == asset.json["size_bytes"] == size


def test_a_file_too_dense_for_its_length_is_not_stored(tmp_path: Path) -> None:
    """A 1 s video followed by 40 MB of padding still probes as 1 s: it is not the video it
    claims to be, and nothing of it reaches the library."""
    source = tmp_path / "provider" / "padded.mp4"
    source.parent.mkdir()
    render_video(source, prompt="padded", duration_seconds=1)
    with source.open("ab") as padded:
        padded.write(b"\0" * 40 * 1024**2)
    storage = LocalStorage(tmp_path / "media")
    with pytest.raises(IngestError, match="implausibly large"):
        ingest_video(
            storage=storage,
            url=source.as_uri(),
            account_id=uuid.uuid4(),
            job_id=uuid.uuid4(),
            local_root=source.parent,
        )
    assert not (tmp_path / "media").exists() or not any((tmp_path / "media").rglob("*.mp4"))


def test_a_failed_copy_into_storage_leaves_no_temporary_file(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "media")
    unreadable = tmp_path / "a-folder-not-a-file"
    unreadable.mkdir()
    with pytest.raises(OSError):
        storage.put("videos/a/b.mp4", unreadable, "video/mp4")
    assert list((tmp_path / "media" / "videos" / "a").iterdir()) == []


def test_a_broken_media_disk_is_retried_and_the_job_completes_once_it_is_repaired(
    make_app: Callable[..., Flask],
    make_account: Callable[..., Any],
    test_env: dict[str, str],
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    """Writes into the videos folder fail (here: a file stands where the folder should be).
    The job waits in ingesting, charged, retried with backoff; nothing is left half
    written; once the disk is repaired the same job completes with its video."""
    media = tmp_path / "media"
    media.mkdir()
    (media / "videos").write_text("not a folder")
    changes = {"CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-disk", "MEDIA_ROOT": str(media)}
    client = make_app(**changes).test_client()
    account = make_account()
    log = tmp_path / "worker.log"
    with running_worker({**test_env, **changes}, log, concurrency=1):
        job_id = generate(client, account, "Disk [sim latency=0.5]")["job_id"]
        wait_for(lambda: log.read_text().count("could not write the video") >= 2, timeout=30)
        job = client.get(f"/v1/jobs/{job_id}", headers=account.headers).json
        assert job["status"] == "processing"
        assert job_entries(runtime, job_id) == {"hold": [350], "capture": [350]}
        assert not list(media.rglob("tmp*"))
        (media / "videos").unlink()  # the operator frees the disk
        job = wait_for_job(client, account, job_id, timeout=60)
    assert job["status"] == "completed", job
    assert (media / "videos").is_dir() and list((media / "videos").rglob("*.mp4"))


def test_every_task_has_a_soft_and_a_hard_time_limit(celery_sender: Celery) -> None:
    """No task can hold a worker process forever; an ingest is killed (hard) by the end of
    its lease, so two downloads of one job never overlap."""
    celery_sender.loader.import_default_modules()
    ours = {name: task for name, task in celery_sender.tasks.items() if name.startswith("naive.")}
    declared = {name for name in vars(names).values() if str(name).startswith("naive.")}
    assert declared == ours.keys(), sorted(ours)  # every task the worker has is checked
    for name, task in ours.items():
        assert 0 < task.soft_time_limit < task.time_limit, name
    assert ours[names.INGEST_MEDIA].time_limit <= machine.INGEST_BUDGET.total_seconds()


def test_readiness_and_metrics_report_the_media_disks_free_space(
    client: Any, runtime: Runtime
) -> None:
    """Operators see a filling disk before ingests fail on it (an alert fires below 2 GiB)."""
    ready = client.get("/readyz")
    assert ready.status_code == 200
    free = ready.json["media_free_bytes"]
    assert free is not None and free > 0
    (sample,) = MediaSpaceCollector(runtime.storage.free_bytes).collect()
    assert sample.name == "naive_media_free_bytes"
    assert abs(sample.samples[0].value - free) < 1024**3  # the same disk, moments apart
