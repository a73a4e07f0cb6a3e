"""Following a job until it ends: poll our API every second, with a live bar at a terminal."""

import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from services.cli.client import ApiClient, segment
from services.cli.errors import ExitCode, Failure
from shared.jobs.schemas import Job
from shared.jobs.status import PublicStatus

POLL_SECONDS = 1.0
# A blip in the network or a restarting API should not abandon a long wait.
MAX_CONSECUTIVE_ERRORS = 5


def follow(
    client: ApiClient, job_id: str, *, timeout: float | None, console: Console | None
) -> Job:
    """Poll `job_id` until its status is final (completed, failed or cancelled), and return it.

    With a `console`, show a live bar (status, progress, queue position, elapsed time). Raises
    `Failure` (code `wait_timeout`) when `timeout` seconds pass first; the job keeps running.
    """
    if console is None:
        return _poll(client, job_id, timeout, lambda job: None)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[queue]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(PublicStatus.QUEUED.value, total=100, queue="")

        def show(job: Job) -> None:
            position = job.queue_position
            bar.update(
                task,
                description=job.status.value,
                completed=job.progress,
                queue=f"queue #{position}" if position is not None else "",
            )

        return _poll(client, job_id, timeout, show)


def _poll(
    client: ApiClient, job_id: str, timeout: float | None, show: Callable[[Job], None]
) -> Job:
    started = time.monotonic()
    errors = 0
    while True:
        pause = POLL_SECONDS
        try:
            job = client.fetch(Job, f"/v1/jobs/{segment(job_id)}")
        except Failure as failure:
            if failure.code == "rate_limited":
                pause = max(pause, failure.retry_after or 0)
            elif failure.exit_code is ExitCode.SERVICE_ERROR and errors < MAX_CONSECUTIVE_ERRORS:
                errors += 1
            else:
                raise
        else:
            errors = 0
            show(job)
            if job.status.is_final:
                return job
        if timeout is not None and time.monotonic() + pause > started + timeout:
            raise Failure(
                {
                    "code": "wait_timeout",
                    "message": f"Job {job_id} did not finish within {timeout:g} s; "
                    "it keeps running.",
                    "job_id": job_id,
                },
                ExitCode.SERVICE_ERROR,
            )
        time.sleep(pause)
