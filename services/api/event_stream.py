"""`GET /v1/jobs/{id}/events`: a job's events as Server-Sent Events (text/event-stream).

Each event is a frame `id: <seq>`, `event: <type>`, `data: {"type", "timestamp", "data":
the job's view}`; `Last-Event-ID` (which browsers' EventSource sends when it reconnects)
resumes after that event, so a client that reconnects sees every event once. The stream
ends after the event of a final state (`job.completed`, `job.failed`, `job.cancelled`), or
after `EVENT_STREAM_MAX_SECONDS`, when the client reconnects and resumes; a quiet stream
carries a comment line every `EVENT_STREAM_HEARTBEAT_SECONDS` so that proxies keep it. A
client resuming after a final event gets 204 No Content, which tells EventSource to stop
reconnecting (the HTML standard's rule).

The stream reads the job's events the way `Prefer: wait` reads its row: each read its own
short transaction (events after the last one sent, in order, at most `BATCH`), then a
sleep growing from 0.2 s to 1 s while nothing happens, back to 0.2 s after an event. So a
stream holds no database connection between reads, only its greenlet and its socket (one
greenlet per stream under gunicorn's gevent worker), and ends at once when its client hangs
up (`prefer.ClientSocket`). Reads rather than LISTEN/NOTIFY for the same reasons as there.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pydantic_core
from flask import Response

from services.api.contract import Param, Schema
from services.api.prefer import ClientSocket
from shared.db import Database
from shared.errors import InvalidInput
from shared.jobs import events
from shared.jobs.models import JobEvent
from shared.jobs.status import PublicStatus

MEDIA_TYPE = "text/event-stream"
FIRST_READ_SECONDS = 0.2
LAST_READ_SECONDS = 1.0
READ_GROWTH = 1.5
BATCH = 100
# The events after which a job never changes again: the stream ends with them.
FINAL_TYPES = frozenset(f"job.{status.value}" for status in PublicStatus if status.is_final)
# EventSource waits this long before reconnecting (after the maximum duration, or a drop).
RECONNECT_MILLISECONDS = 1000
HEARTBEAT = ": heartbeat\n\n"
# Why `Last-Event-ID` is at most 10 digits: a job has far fewer events (`seq` is an int4).
_MAX_DIGITS = 10
View = Callable[[dict[str, Any]], dict[str, Any]]

LAST_EVENT_ID = Param(
    "header",
    "Last-Event-ID",
    {"type": "string"},
    "Resume after this event (its `id:`, the job's event sequence number); EventSource sends "
    "it when it reconnects. Absent: every event from the first.",
)
STREAM_HEADERS: dict[str, Schema] = {
    "Cache-Control": {"description": "`no-cache`.", "schema": {"type": "string"}},
}
DESCRIPTION = (
    "Server-Sent Events, one per change of the job: `id: <seq>` (1, 2, 3… per job), "
    "`event: <type>` (`job.queued`, `job.processing`, `asset.ingested`, `job.completed`, "
    '`job.failed`, `job.cancelled`), `data: {"type", "timestamp", "data": <the job>}`. A '
    "comment line (`: heartbeat`) every 15 s while nothing happens. The stream closes after "
    "the job's final event, or after 5 minutes (reconnect with `Last-Event-ID`)."
)


def last_event_id(header: str | None, latest: int) -> int:
    """The sequence number to resume after (0: from the first event); `InvalidInput` for a
    value that is not a whole number or names an event the job has not had (`latest`)."""
    if header is None:
        return 0
    value = header.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
        raise InvalidInput(
            "`Last-Event-ID` must be an event's id (a whole number).",
            fields={"Last-Event-ID": "not an event id"},
        )
    if int(value) > latest:
        raise InvalidInput(
            f"The job has no event {int(value)} (its latest is {latest}).",
            fields={"Last-Event-ID": "no such event"},
        )
    return int(value)


def frame(event: JobEvent, view: View) -> str:
    """One event as an SSE frame (its JSON on one line, as `data:` needs); `view` shows
    the job as the event recorded it."""
    body = {"type": event.type, "timestamp": event.created_at, "data": view(event.data)}
    return f"id: {event.seq}\nevent: {event.type}\ndata: {pydantic_core.to_json(body).decode()}\n\n"


def response(
    *,
    db: Database,
    job_id: uuid.UUID,
    view: View,
    after: int,
    heartbeat: float,
    limit: float,
    sock: Any,
    head: bool,
) -> Response:
    """The 200 streaming the job's events after `after`, for at most `limit` seconds; for a
    HEAD, its headers alone (gunicorn runs a body it will not send to its end)."""
    body = (
        iter(()) if head else _frames(db, job_id, view, after, heartbeat, limit, ClientSocket(sock))
    )
    return Response(
        body,
        mimetype=MEDIA_TYPE,
        # No caching, and no buffering by nginx-like proxies (`X-Accel-Buffering`).
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _frames(
    db: Database,
    job_id: uuid.UUID,
    view: View,
    after: int,
    heartbeat: float,
    limit: float,
    client: ClientSocket,
) -> Iterator[str]:
    now = time.monotonic()
    deadline, beat_at, interval = now + limit, now + heartbeat, FIRST_READ_SECONDS
    # Sent at once, so the client has the answer's headers before the first event.
    yield f"retry: {RECONNECT_MILLISECONDS}\n\n"
    while True:
        with db.transaction() as session:
            batch = events.events_after(session=session, job_id=job_id, after=after, limit=BATCH)
            frames = "".join(frame(event, view) for event in batch)
        now = time.monotonic()
        if batch:
            yield frames
            after = batch[-1].seq
            if batch[-1].type in FINAL_TYPES:
                return
            beat_at, interval = now + heartbeat, FIRST_READ_SECONDS
            if len(batch) == BATCH:
                continue  # more are waiting: read on at once
        if now >= deadline:
            return
        if now >= beat_at:
            yield HEARTBEAT
            beat_at = now + heartbeat
        if not client.still_there_after(min(interval, beat_at - now, deadline - now)):
            return
        interval = min(interval * READ_GROWTH, LAST_READ_SECONDS)
