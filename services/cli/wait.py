"""Following a job until it ends: its event stream (`GET /v1/jobs/{id}/events`), resumed with
`Last-Event-ID` when the connection drops; an API without the stream (404: an older version)
is polled every second instead. With a live bar at a terminal. And a batch, polled until
its last item ends."""

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import BaseModel
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from services.cli.client import TIMEOUT_SECONDS, ApiClient, read, segment
from services.cli.errors import ExitCode, Failure
from shared.batches.schemas import Batch
from shared.jobs.schemas import Job
from shared.jobs.status import PublicStatus
from shared.wire import instant

POLL_SECONDS = 1.0
BATCH_POLL_SECONDS = 2.0
# A blip in the network or a restarting API should not abandon a long wait.
MAX_CONSECUTIVE_ERRORS = 5
# How far a wait may run past its timeout on a quiet stream: a stream is reopened with a
# shorter read timeout at most this often near the end.
OVERRUN_SECONDS = 1.0
# The answers of an API that has no event stream: then poll.
NO_STREAM = frozenset({"http_404", "http_405", "not_found"})
# The events after which a job never changes (the stream closes after them). Not the job's
# status: `asset.ingested` shows the job completed, and `job.completed` follows it.
FINAL_EVENTS = frozenset(f"job.{status.value}" for status in PublicStatus if status.is_final)


class _Frame(BaseModel):
    """The `data:` of an event: its type, when it happened, the job as it was then."""

    type: str
    timestamp: datetime
    data: Job


class _Ended(Exception):
    """The stream answered 204: the job ended before this connection, nothing is left."""


class Deadline:
    """When a wait with `timeout` seconds (None: no limit) gives up on `job_id`."""

    def __init__(self, job_id: str, timeout: float | None) -> None:
        self.job_id = job_id
        self.timeout = timeout
        self.at = None if timeout is None else time.monotonic() + timeout

    def read_timeout(self) -> float:
        """The next connection's read timeout: what is left of the wait, at most the client's
        own (the stream's heartbeats come more often)."""
        self.check(0)
        return (
            TIMEOUT_SECONDS if self.at is None else min(TIMEOUT_SECONDS, self.at - time.monotonic())
        )

    def outlasts(self, read_timeout: float) -> bool:
        """Whether a read waiting `read_timeout` from now could end after the wait: then the
        stream is reopened with a shorter one, so a quiet stream (heartbeats only) still
        ends the wait on time."""
        return self.at is not None and time.monotonic() + read_timeout > self.at + OVERRUN_SECONDS

    def check(self, pause: float) -> None:
        """Raise `wait_timeout` when the wait would end within `pause` seconds."""
        if self.at is not None and self.timeout is not None and time.monotonic() + pause >= self.at:
            raise Failure(
                {
                    "code": "wait_timeout",
                    "message": f"Job {self.job_id} did not finish within {self.timeout:g} s; "
                    "it keeps running.",
                    "job_id": self.job_id,
                },
                ExitCode.SERVICE_ERROR,
            )


@dataclass(frozen=True)
class Update:
    """One change of the job: an event of its stream (`seq` its id), or a change seen by a
    poll (`seq` None, `type` `job.<status>`)."""

    seq: int | None
    type: str
    timestamp: datetime
    job: Job

    def as_json(self) -> dict[str, Any]:
        """The event as the stream sent it, with its id."""
        return {
            "id": self.seq,
            "type": self.type,
            "timestamp": instant(self.timestamp),
            "data": self.job.model_dump(mode="json"),
        }


def follow(
    client: ApiClient, job_id: str, *, timeout: float | None, console: Console | None
) -> Job:
    """Follow `job_id` until its status is final (completed, failed or cancelled), and return it.

    With a `console`, show a live bar (status, progress, queue position, elapsed time). Raises
    `Failure` (code `wait_timeout`) when `timeout` seconds pass first; the job keeps running.
    """
    if console is None:
        return watch(client, job_id, timeout=timeout, on_update=lambda update: None)
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

        def show(update: Update) -> None:
            job = update.job
            position = job.queue_position
            bar.update(
                task,
                description=job.status.value,
                completed=job.progress,
                queue=f"queue #{position}" if position is not None else "",
            )

        return watch(client, job_id, timeout=timeout, on_update=show)


def watch(
    client: ApiClient,
    job_id: str,
    *,
    timeout: float | None,
    on_update: Callable[[Update], None],
) -> Job:
    """Call `on_update` with each event of `job_id` once, in order, until the job ends; return
    the job as `GET /v1/jobs/{id}` shows it then. Polls where the API has no event stream."""
    deadline = Deadline(job_id, timeout)
    path = f"/v1/jobs/{segment(job_id)}"
    after, errors = 0, 0
    while True:
        pause = 0.0  # the server ended the stream (its longest): resume at once
        try:
            for update in _events(client, path, after, deadline):
                after, errors = update.seq or after, 0
                on_update(update)
                if update.type in FINAL_EVENTS:
                    return client.fetch(Job, path)
        except _Ended:
            return client.fetch(Job, path)
        except Failure as failure:
            if failure.code in NO_STREAM and after == 0:
                return _poll(client, path, deadline, on_update)
            pause = _retry_pause(failure, errors)
            errors += 1
        deadline.check(pause)
        time.sleep(pause)


def _events(client: ApiClient, path: str, after: int, deadline: Deadline) -> Iterator[Update]:
    """The events after `after`, until the server ends this connection (a 204 has none), or
    until the wait's end is nearer than this connection's read timeout."""
    read_timeout = deadline.read_timeout()
    headers = {"Accept": "text/event-stream"}
    if after:
        headers["Last-Event-ID"] = str(after)
    with client.stream(f"{path}/events", headers=headers, timeout=read_timeout) as response:
        if response.status_code == httpx.codes.NO_CONTENT:
            raise _Ended
        fields: dict[str, str] = {}
        data: list[str] = []
        for line in response.iter_lines():
            if line and not line.startswith(":"):  # a field of the frame being read
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "data":
                    data.append(value)
                else:
                    fields[name] = value
                continue
            if not line:  # the frame's end (a comment line is a heartbeat)
                if data and "id" in fields:
                    body = read(_Frame, _json("\n".join(data)))
                    yield Update(int(fields["id"]), body.type, body.timestamp, body.data)
                fields, data = {}, []
            if deadline.outlasts(read_timeout):
                return  # between frames: resumed at once, with what is left to wait


def _poll(
    client: ApiClient, path: str, deadline: Deadline, on_update: Callable[[Update], None]
) -> Job:
    """Follow by `GET` every second, reporting each change of status, progress or position."""
    errors = 0
    seen: tuple[object, ...] = ()
    while True:
        pause = POLL_SECONDS
        try:
            job = client.fetch(Job, path)
        except Failure as failure:
            pause = max(pause, _retry_pause(failure, errors))
            errors += 1
        else:
            errors = 0
            if (state := (job.status, job.progress, job.queue_position)) != seen:
                seen = state
                on_update(Update(None, f"job.{job.status.value}", datetime.now(UTC), job))
            if job.status.is_final:
                return job
        deadline.check(pause)
        time.sleep(pause)


def until_batch_ends(client: ApiClient, batch_id: str, timeout: float | None) -> Batch:
    """Poll the batch until none of its items is unfinished; a passing failure (a dropped
    connection, the API restarting) is tried again, as a job's wait does."""
    path = f"/v1/video/batches/{segment(batch_id)}"
    deadline = None if timeout is None else time.monotonic() + timeout
    errors = 0
    while True:
        try:
            shown = client.fetch(Batch, path)
        except Failure as failure:
            pause = _retry_pause(failure, errors)
            errors += 1
        else:
            if shown.status != "processing":
                return shown
            pause, errors = BATCH_POLL_SECONDS, 0
        if deadline is not None and time.monotonic() >= deadline:
            raise Failure(
                {"code": "timeout", "message": f"Batch {batch_id} is still processing."},
                ExitCode.INTERRUPTED,
            )
        time.sleep(pause)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise Failure(
            {"code": "bad_response", "message": "An event's data is not JSON."},
            ExitCode.SERVICE_ERROR,
        ) from None


def _retry_pause(failure: Failure, errors: int) -> float:
    """How long to wait before trying again after `failure`; raises it when it is not
    passing (a 4xx, or the API failing too many times in a row)."""
    if failure.code == "rate_limited":
        return max(POLL_SECONDS, failure.retry_after or 0)
    if failure.exit_code is ExitCode.SERVICE_ERROR and errors < MAX_CONSECUTIVE_ERRORS:
        return POLL_SECONDS
    raise failure
