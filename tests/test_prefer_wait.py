"""`Prefer: wait=N` (RFC 7240) on `POST /v1/video/generate` and `GET /v1/jobs/{id}` (issue
12, item 4), against the session's real worker; and under gunicorn over HTTP, where waiting
requests must leave the worker free for others and end when their client hangs up."""

from __future__ import annotations

import re
import socket
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from flask import Flask

from services.api import prefer
from tests.helpers import KLING_T2V, generate, get_job, wait_for_job
from tests.stack import Api, running_api
from tests.waiting import wait_for

# Seconds a waiting answer may run past its N: the last read, its interval, the request.
SLACK = 1.5


def submit(client, account, prompt: str, wait: str, key: str | None = None):
    headers = {**account.headers, "Prefer": wait}
    if key is not None:
        headers["Idempotency-Key"] = key
    body = {"model": KLING_T2V, "input": {"prompt": prompt, "duration": "3"}}
    return client.post("/v1/video/generate", json=body, headers=headers)


def timed(call):
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_wait_on_a_short_render_answers_200_with_the_completed_job(client, account):
    response, elapsed = timed(lambda: submit(client, account, "[sim latency=3]", "wait=10"))
    assert response.status_code == 200, response.json
    job = response.json
    assert job["status"] == "completed", job
    assert job["result"]["media_asset_id"]
    assert response.headers["Preference-Applied"] == "wait=10"
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert elapsed < 10
    # The full job, as GET returns it (not the 202's summary).
    assert set(job) == set(get_job(client, account, job["id"]))


def test_a_wait_shorter_than_the_render_answers_as_today_after_about_n_seconds(client, account):
    response, elapsed = timed(lambda: submit(client, account, "[sim latency=30]", "wait=2"))
    assert response.status_code == 202, response.json
    accepted = response.json
    assert accepted["status"] == "processing", accepted
    assert response.headers["Preference-Applied"] == "wait=2"
    assert 2 <= elapsed < 2 + SLACK

    path = f"/v1/jobs/{accepted['job_id']}"
    response, elapsed = timed(
        lambda: client.get(path, headers={**account.headers, "Prefer": "wait=1"})
    )
    assert response.status_code == 200
    assert response.json["status"] == "processing"
    assert response.headers["Preference-Applied"] == "wait=1"
    assert 1 <= elapsed < 1 + SLACK
    client.delete(path, headers=account.headers)  # no need to render it


def test_a_wait_on_a_job_that_has_ended_answers_at_once(client, account):
    key = uuid.uuid4().hex
    accepted = submit(client, account, "[sim latency=0.5]", "wait=0", key=key).json
    job_id = accepted["job_id"]
    assert wait_for_job(client, account, job_id)["status"] == "completed"

    path = f"/v1/jobs/{job_id}"
    response, elapsed = timed(
        lambda: client.get(path, headers={**account.headers, "Prefer": "wait=60"})
    )
    assert response.status_code == 200
    assert response.headers["Preference-Applied"] == "wait=60"
    assert elapsed < 1

    # An idempotent replay waits the same way: the job has ended, so 200 with it at once.
    # More than 60 seconds is taken as 60, and says so.
    replay, elapsed = timed(lambda: submit(client, account, "[sim latency=0.5]", "wait=999", key))
    assert replay.status_code == 200, replay.json
    assert replay.json["id"] == job_id and replay.json["status"] == "completed"
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.headers["Preference-Applied"] == "wait=60"
    assert replay.headers["Location"] == path
    assert elapsed < 1


MALFORMED = ["wait=0", "wait=abc", "wait=-1", "wait=2.5", "wait", "wait=", "respond-async"]


@pytest.mark.parametrize("value", MALFORMED)
def test_malformed_waits_are_ignored(idle_app: Flask, make_account, value):
    """Answered at once as without the header (the job stays queued: no worker reads the
    idle app's messages), and never refused."""
    client, account = idle_app.test_client(), make_account()
    response, elapsed = timed(lambda: submit(client, account, "ignored", value))
    assert response.status_code == 202, response.json
    assert "Preference-Applied" not in response.headers
    assert elapsed < 1
    path = f"/v1/jobs/{response.json['job_id']}"
    answer, elapsed = timed(lambda: client.get(path, headers={**account.headers, "Prefer": value}))
    assert answer.status_code == 200
    assert "Preference-Applied" not in answer.headers
    assert elapsed < 1


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        (["wait=10"], 10),
        (["WAIT = 7"], 7),
        (['wait="5"'], 5),
        (["respond-async, wait=3"], 3),
        (["respond-async", "wait=4; x=y"], 4),
        (["wait=2", "wait=9"], 2),  # only the first counts (RFC 7240, section 2)
        (["wait=abc, wait=9"], None),
        (["wait=0060"], 60),
        (["wait=61"], 60),
        (["wait=" + "9" * 5000], 60),
        (["wait=٣"], None),  # a digit, but not an ASCII one
        ([], None),
    ],
)
def test_the_wait_preference_is_read_as_rfc_7240_writes_it(app: Flask, headers, seconds):
    with app.test_request_context(headers=[("Prefer", value) for value in headers]):
        assert prefer.requested_wait() == seconds


# ---- under gunicorn --------------------------------------------------------------------

WAITING = 20
RESPONSIVE_SECONDS = 1.0


def test_waiting_requests_leave_the_api_free_and_end_when_their_client_leaves(
    test_env: dict[str, str], tmp_path: Path, idle_app: Flask, make_account
):
    """One gevent worker, so the waiting requests and the probes share it."""
    (tmp_path / "metrics").mkdir()
    env = {**test_env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    api_log = tmp_path / "api.log"
    with running_api(env, api_log, workers=1) as api:
        durations, held = _hold_and_leave(api, api_log, idle_app, make_account())
    assert max(int(ms) for ms in durations) / 1000 < held + SLACK


def _hold_and_leave(api: Api, api_log: Path, idle_app: Flask, account) -> tuple[list[str], float]:
    """WAITING requests wait on a job that stays queued while /healthz is probed, then
    their clients hang up; returns how long each took (the access log's ms) and how long
    the clients held them."""
    job_id = generate(idle_app.test_client(), account, "never rendered")["job_id"]  # queued
    path = f"/v1/jobs/{job_id}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {account.key}\r\n"
        "Prefer: wait=60\r\n\r\n"
    ).encode()
    port = int(api.url.rsplit(":", 1)[1])
    with ExitStack() as stack, httpx.Client(base_url=api.url, timeout=5) as http:
        waiting = []
        sent = time.monotonic()
        for _ in range(WAITING):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            sock.sendall(request)
            waiting.append(sock)

        for _ in range(10):
            response, elapsed = timed(lambda: http.get("/healthz"))
            assert response.status_code == 200
            assert elapsed < RESPONSIVE_SECONDS
        for sock in waiting:  # still waiting, every one: nothing answered yet
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
            sock.close()
        held = time.monotonic() - sent

    # Each wait ends as soon as its client has gone, not after 60 s.
    line = re.compile(rf'"GET {re.escape(path)} HTTP/1.1" 200 \d+ (\d+)ms')

    def all_ended() -> list[str] | None:
        found = line.findall(api_log.read_text())
        return found if len(found) == WAITING else None

    return wait_for(all_ended, timeout=10, message=lambda: api_log.read_text()[-3000:]), held
