"""`GET /v1/jobs/{id}/events` (issue 12, item 3): a job's events as Server-Sent Events,
against the session's real worker through Flask's test client; and under gunicorn over
HTTP, where hundreds of open streams must leave the API answering and end with their
clients."""

from __future__ import annotations

import json
import re
import socket
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests import conftest
from tests.helpers import generate, get_job, wait_for_job
from tests.stack import running_api
from tests.waiting import wait_for

FINAL = "job.completed"
T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    """One SSE frame: an event (with id), or a comment or `retry:` line (id None)."""

    id: int | None
    type: str | None
    data: dict[str, Any] | None
    comment: str | None


def frames(chunks: Iterable[bytes]) -> Iterator[Frame]:
    """The frames of a stream as they arrive (fields as the SSE format writes them)."""
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        while b"\n\n" in buffer:
            raw, buffer = buffer.split(b"\n\n", 1)
            fields: dict[str, str] = {}
            for line in raw.decode().split("\n"):
                name, _, value = line.partition(":")
                fields[name or "comment"] = value.removeprefix(" ")
            yield Frame(
                int(fields["id"]) if "id" in fields else None,
                fields.get("event"),
                json.loads(fields["data"]) if "data" in fields else None,
                fields.get("comment"),
            )


def timed(call: Callable[[], T]) -> tuple[T, float]:
    started = time.monotonic()
    value = call()
    return value, time.monotonic() - started


def stream(
    client: FlaskClient, account: conftest.TestAccount, job_id: str, **headers: str
) -> TestResponse:
    return client.get(
        f"/v1/jobs/{job_id}/events", headers={**account.headers, **headers}, buffered=False
    )


def events_of(response: TestResponse) -> list[Frame]:
    assert response.status_code == 200, response.get_data()
    assert response.mimetype == "text/event-stream"
    with response:
        return [frame for frame in frames(response.iter_encoded()) if frame.id is not None]


def test_a_job_streamed_to_its_end_shows_every_event_in_order(client, account):
    job_id = generate(client, account, "[sim latency=2] a lighthouse")["job_id"]
    seen = events_of(stream(client, account, job_id))

    assert [frame.id for frame in seen] == list(range(1, len(seen) + 1))
    assert seen[0].type == "job.queued" and seen[-1].type == FINAL
    assert "job.processing" in {frame.type for frame in seen}
    for frame in seen:
        assert frame.data is not None
        assert frame.data["type"] == frame.type
        assert frame.data["timestamp"]
        assert frame.data["data"]["id"] == job_id
    assert seen[-1].data is not None
    assert seen[-1].data["data"]["status"] == "completed"
    # The job as GET shows it: our copy of the video (signed per hour: compare the path).
    shown, video = get_job(client, account, job_id), seen[-1].data["data"]["result"]["video"]
    assert seen[-1].data["data"]["result"]["media_asset_id"] == shown["result"]["media_asset_id"]
    assert video["url"].split("?")[0] == shown["result"]["video"]["url"].split("?")[0]
    assert video["provider_url"] == shown["result"]["video"]["provider_url"]


def test_a_client_that_reconnects_with_last_event_id_sees_every_event_once(client, account):
    job_id = generate(client, account, "[sim latency=2] a harbour")["job_id"]
    first = stream(client, account, job_id)
    assert first.status_code == 200
    with first:  # read the first events, then hang up
        seen = []
        for frame in frames(first.iter_encoded()):
            if frame.id is not None:
                seen.append(frame)
            if len(seen) == 2:
                break
    assert seen[-1].type != FINAL  # hung up mid-stream
    seen += events_of(stream(client, account, job_id, **{"Last-Event-ID": str(seen[-1].id)}))

    replay = events_of(stream(client, account, job_id))
    assert [frame.id for frame in seen] == [frame.id for frame in replay]
    assert seen == replay
    assert seen[-1].type == FINAL


def test_a_finished_job_replays_at_once_then_tells_the_client_to_stop(client, account):
    job_id = generate(client, account, "[sim latency=0.5] a bridge")["job_id"]
    assert wait_for_job(client, account, job_id)["status"] == "completed"

    seen, elapsed = timed(lambda: events_of(stream(client, account, job_id)))
    assert elapsed < 1
    assert seen[0].id == 1 and seen[-1].type == FINAL

    last = str(seen[-1].id)
    assert stream(client, account, job_id, **{"Last-Event-ID": last}).status_code == 204
    for bad in (str(len(seen) + 1), "x", "-1", "9" * 40):
        refused = stream(client, account, job_id, **{"Last-Event-ID": bad})
        assert refused.status_code == 422, bad
        assert refused.json is not None
        assert refused.json["error"]["code"] == "invalid_input"


def test_unknown_and_foreign_jobs_are_not_found(client, account, make_account):
    job_id = generate(client, account, "[sim latency=0.5] mine")["job_id"]
    for who, which in ((make_account(), job_id), (account, str(uuid.uuid4())), (account, "x")):
        response = stream(client, who, which)
        assert response.status_code == 404
        assert response.mimetype == "application/json"
        assert response.json is not None
        assert response.json["error"]["code"] == "not_found"


def test_a_quiet_stream_sends_heartbeats_and_ends_after_its_maximum(make_app, make_account):
    """A job that stays queued (its message reaches no worker): the stream carries
    heartbeats, then closes after EVENT_STREAM_MAX_SECONDS."""
    app = make_app(
        CELERY_QUEUE=f"idle-{uuid.uuid4().hex[:8]}",
        EVENT_STREAM_HEARTBEAT_SECONDS="0.3",
        EVENT_STREAM_MAX_SECONDS="1.5",
    )
    client, account = app.test_client(), make_account()
    job_id = generate(client, account, "never rendered")["job_id"]
    response = stream(client, account, job_id)
    with response:
        received, elapsed = timed(lambda: list(frames(response.iter_encoded())))
    assert 1.5 <= elapsed < 3
    assert [frame.type for frame in received if frame.id is not None] == ["job.queued"]
    assert sum(frame.comment == "heartbeat" for frame in received) >= 3

    head, elapsed = timed(lambda: client.head(f"/v1/jobs/{job_id}/events", headers=account.headers))
    assert head.status_code == 200 and head.mimetype == "text/event-stream"
    assert elapsed < 1


# ---- under gunicorn --------------------------------------------------------------------

STREAMS = 200
RESPONSIVE_SECONDS = 1.0


def test_many_open_streams_leave_the_api_answering_and_end_with_their_clients(
    test_env: dict[str, str], tmp_path: Path, idle_app: Flask, make_account
):
    """One gevent worker holds STREAMS streams of a queued job while /healthz is probed;
    each stream has its headers, its first event and a heartbeat; all end once their
    clients hang up."""
    (tmp_path / "metrics").mkdir()
    env = {
        **test_env,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        "EVENT_STREAM_HEARTBEAT_SECONDS": "1",
    }
    api_log = tmp_path / "api.log"
    account = make_account()
    job_id = generate(idle_app.test_client(), account, "never rendered")["job_id"]
    path = f"/v1/jobs/{job_id}/events"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {account.key}\r\n"
        "Accept: text/event-stream\r\n\r\n"
    ).encode()
    with running_api(env, api_log, workers=1) as api:
        port = int(api.url.rsplit(":", 1)[1])
        with ExitStack() as stack, httpx.Client(base_url=api.url, timeout=5) as http:
            streams = []
            for _ in range(STREAMS):
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), 10))
                sock.sendall(request)
                streams.append(sock)
            for sock in streams:
                head = _read_until(sock, b"event: job.queued")
                assert head.startswith(b"HTTP/1.1 200"), head[:200]
                assert b"text/event-stream" in head
            for _ in range(10):
                probe, elapsed = timed(lambda: http.get("/healthz"))
                assert probe.status_code == 200
                assert elapsed < RESPONSIVE_SECONDS
            _read_until(streams[-1], b": heartbeat")
            for sock in streams:
                sock.close()

        line = re.compile(rf'"GET {re.escape(path)} HTTP/1.1" 200 ')

        def all_ended() -> bool:
            return len(line.findall(api_log.read_text())) == STREAMS

        wait_for(all_ended, timeout=10, message=lambda: api_log.read_text()[-3000:])


def _read_until(sock: socket.socket, marker: bytes) -> bytes:
    received = b""
    while marker not in received:
        chunk = sock.recv(65536)
        assert chunk, received
        received += chunk
    return received
