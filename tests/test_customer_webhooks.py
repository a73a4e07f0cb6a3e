"""Customer webhooks on the real stack: an account's subscriptions (created with a secret
shown once, listed, read, changed, deleted; another account's are not found), the address
policy on their URLs, and their deliveries: fanned out by the dispatcher, sent by the
session worker from its webhooks queue to a receiver on this machine, signed as Standard
Webhooks specifies (verified with its reference library), in order per job, retried on 5xx
(`WEBHOOK_RETRY_SCHEDULE` is short here), listed, and redelivered."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import standardwebhooks
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from services.worker import dispatcher
from shared.config import ConfigError, load_settings
from shared.db import utcnow
from shared.jobs import events
from shared.jobs.models import JobEvent
from shared.jobs.status import JobStatus
from shared.media.url_policy import address_policy
from shared.media.urls import token_grants
from shared.runtime import Runtime
from shared.webhooks import deliveries, delivery
from shared.webhooks import service as webhooks
from shared.webhooks.schemas import EventType
from tests import conftest
from tests.helpers import KLING_T2V, generate, get_job, wait_for_job
from tests.waiting import wait_for

RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture
def api(client: FlaskClient) -> FlaskClient:
    """The tests' API accepts loopback webhook URLs (`WEBHOOK_ALLOW_PRIVATE_URLS=1`)."""
    return client


@pytest.fixture(scope="module")
def public_only(make_app: Callable[..., Flask]) -> Flask:
    """An API under the default address policy."""
    return make_app(WEBHOOK_ALLOW_PRIVATE_URLS="0")


def _create(api: FlaskClient, account: conftest.TestAccount, **body: Any) -> dict[str, Any]:
    body = {"url": RECEIVER, "events": ["job.completed"], **body}
    answer = api.post("/v1/webhooks", json=body, headers=account.headers)
    assert answer.status_code == 201, answer.get_json()
    created: dict[str, Any] = answer.get_json()
    return created


def test_event_types_are_every_event_a_job_writes() -> None:
    written = {kind for status in JobStatus for kind in events.types_for(status)}
    assert set(EventType.__args__) == written


def test_create_shows_the_secret_once(api: FlaskClient, account: conftest.TestAccount) -> None:
    created = _create(api, account, events=["job.completed", "job.failed"], description="ci")
    assert set(created) == {
        "id",
        "url",
        "events",
        "description",
        "status",
        "disabled_reason",
        "secret",
        "created_at",
    }
    assert (created["status"], created["disabled_reason"]) == ("enabled", None)
    assert created["url"] == RECEIVER
    assert created["events"] == ["job.completed", "job.failed"]
    assert created["secret"].startswith("whsec_")
    read = api.get(f"/v1/webhooks/{created['id']}", headers=account.headers).get_json()
    assert "secret" not in read
    assert read == {k: v for k, v in created.items() if k != "secret"}
    listed = api.get("/v1/webhooks", headers=account.headers).get_json()["data"]
    assert [hook["id"] for hook in listed] == [created["id"]]
    assert "secret" not in listed[0]


def test_each_subscription_has_its_own_secret(
    api: FlaskClient, account: conftest.TestAccount
) -> None:
    assert _create(api, account)["secret"] != _create(api, account)["secret"]


def test_patch_changes_only_what_it_names(api: FlaskClient, account: conftest.TestAccount) -> None:
    created = _create(api, account, description="first")
    path = f"/v1/webhooks/{created['id']}"
    changed = api.patch(path, json={"events": ["job.failed"]}, headers=account.headers)
    assert changed.status_code == 200
    assert changed.get_json()["events"] == ["job.failed"]
    assert changed.get_json()["description"] == "first"
    cleared = api.patch(path, json={"description": None}, headers=account.headers).get_json()
    assert cleared["description"] is None
    assert cleared["events"] == ["job.failed"]
    assert cleared["url"] == RECEIVER
    refused = api.patch(path, json={"url": None}, headers=account.headers)
    assert refused.status_code == 422
    assert refused.get_json()["error"]["fields"] == {"url": "cannot be null"}
    refused = api.patch(path, json={"url": "https://u:p@example.com/"}, headers=account.headers)
    assert refused.get_json()["error"]["fields"] == {
        "url": "must not contain a user name or password"
    }


def test_delete_removes_it(api: FlaskClient, account: conftest.TestAccount) -> None:
    created = _create(api, account)
    path = f"/v1/webhooks/{created['id']}"
    assert api.delete(path, headers=account.headers).status_code == 204
    assert api.get(path, headers=account.headers).status_code == 404
    assert api.delete(path, headers=account.headers).status_code == 404
    assert api.get("/v1/webhooks", headers=account.headers).get_json()["data"] == []


def test_another_accounts_subscription_is_not_found(
    api: FlaskClient, make_account: Callable[..., conftest.TestAccount]
) -> None:
    owner, other = make_account(), make_account()
    path = f"/v1/webhooks/{_create(api, owner)['id']}"
    assert api.get(path, headers=other.headers).get_json()["error"]["code"] == "not_found"
    assert (
        api.patch(path, json={"events": ["job.failed"]}, headers=other.headers).status_code == 404
    )
    assert api.delete(path, headers=other.headers).status_code == 404
    assert api.get("/v1/webhooks", headers=other.headers).get_json()["data"] == []
    assert api.get(path, headers=owner.headers).status_code == 200
    assert api.get("/v1/webhooks/not-an-id", headers=owner.headers).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": RECEIVER, "events": []}, "events"),
        ({"url": RECEIVER, "events": ["job.started"]}, "events.0"),
        ({"url": "ftp://example.com/hook", "events": ["job.failed"]}, "url"),
        ({"url": "data:text/plain,hi", "events": ["job.failed"]}, "url"),
        ({"events": ["job.failed"]}, "url"),
        ({"url": RECEIVER, "events": ["job.failed"], "secret": "mine"}, "secret"),
        ({"url": "https://user:pass@example.com/hook", "events": ["job.failed"]}, "url"),
        ({"url": "https://token@example.com/hook", "events": ["job.failed"]}, "url"),
    ],
)
def test_invalid_subscriptions_are_refused(
    api: FlaskClient, account: conftest.TestAccount, body: dict[str, Any], field: str
) -> None:
    answer = api.post("/v1/webhooks", json=body, headers=account.headers)
    assert answer.status_code == 422
    assert field in answer.get_json()["error"]["fields"]
    assert "user:pass" not in answer.get_data(as_text=True)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://[::1]/hook"]
)
def test_private_urls_are_refused_unless_allowed(
    public_only: Flask, account: conftest.TestAccount, url: str
) -> None:
    client = public_only.test_client()
    body = {"url": url, "events": ["job.completed"]}
    refused = client.post("/v1/webhooks", json=body, headers=account.headers)
    assert refused.status_code == 422
    assert "non-public" in refused.get_json()["error"]["fields"]["url"]
    created = _create(client, account, url="https://93.184.215.14/hook")
    patch = {"url": url}
    path = f"/v1/webhooks/{created['id']}"
    assert client.patch(path, json=patch, headers=account.headers).status_code == 422


def test_subscriptions_need_a_key(api: FlaskClient) -> None:
    assert api.get("/v1/webhooks").status_code == 401
    assert (
        api.post("/v1/webhooks", json={"url": RECEIVER, "events": ["job.failed"]}).status_code
        == 401
    )


# ---- deliveries -------------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


class Receiver:
    """A customer's endpoint on this machine: records every POST by path and answers each
    with the next status scripted for its path (200 once the script is spent)."""

    def __init__(self) -> None:
        self.received: dict[str, list[Received]] = defaultdict(list)
        self.scripts: dict[str, list[int]] = defaultdict(list)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver.lock:
                    receiver.received[self.path].append(Received(dict(self.headers), body))
                    script = receiver.scripts[self.path]
                    status = script.pop(0) if script else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def endpoint(self, *statuses: int) -> str:
        """A fresh URL whose first answers are `statuses`."""
        path = f"/{uuid.uuid4().hex}"
        self.scripts[path] = list(statuses)
        return self.base_url + path

    def at(self, url: str) -> list[Received]:
        with self.lock:
            return list(self.received[url.removeprefix(self.base_url)])


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    thread = threading.Thread(target=made.server.serve_forever, daemon=True)
    thread.start()
    yield made
    made.server.shutdown()
    made.server.server_close()


@pytest.fixture(scope="module")
def dispatching(runtime: Runtime, celery_sender: Celery, worker: None) -> Iterator[None]:
    """The dispatcher's webhook work as beat runs it each tick (here every 0.1 s, in this
    process): the session worker reads the webhooks queue and sends the deliveries."""
    stop = threading.Event()

    def tick() -> None:
        while not stop.wait(0.1):
            dispatcher.dispatch_webhooks(runtime, celery_sender, now=utcnow())

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


def _job_events(runtime: Runtime, job_id: str) -> list[JobEvent]:
    with runtime.db.transaction() as session:
        found = events.events_after(session=session, job_id=uuid.UUID(job_id))
        session.expunge_all()
        return found


def _completed_job(api: FlaskClient, account: conftest.TestAccount) -> str:
    job_id: str = generate(api, account, "A kite over dunes")["job_id"]
    assert wait_for_job(api, account, job_id)["status"] == "completed"
    return job_id


def _deliveries(api: FlaskClient, account: conftest.TestAccount, hook: dict[str, Any]) -> Any:
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    answer = api.get(path, headers=account.headers)
    assert answer.status_code == 200
    return answer.get_json()["data"]


def _settled(api: FlaskClient, account: conftest.TestAccount, hook: dict[str, Any]) -> Any:
    """The subscription's deliveries once none is pending."""
    return wait_for(
        lambda: (
            (found := _deliveries(api, account, hook))
            and all(row["status"] != "pending" for row in found)
            and found
        ),
        timeout=30,
        message=lambda: f"deliveries still pending: {_deliveries(api, account, hook)}",
    )


@pytest.mark.usefixtures("dispatching")
def test_every_event_is_delivered_signed_and_in_order(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    hook = _create(api, account, url=url, events=list(EventType.__args__))
    job_id = _completed_job(api, account)
    written = _job_events(runtime, job_id)
    got = wait_for(
        lambda: len(receiver.at(url)) >= len(written) and receiver.at(url),
        timeout=30,
        message=lambda: f"{len(receiver.at(url))} of {len(written)} events arrived",
    )
    assert [request.event["type"] for request in got] == [event.type for event in written]
    verifier = standardwebhooks.Webhook(hook["secret"])
    for request, event in zip(got, written, strict=True):
        assert verifier.verify(request.body, request.headers) == request.event
        if not (event.data.get("result") or {}).get("media_asset_id"):
            assert request.event["data"] == event.data
        assert request.headers["Content-Type"] == "application/json"
    assert len({request.headers["webhook-id"] for request in got}) == len(written)
    final = got[-1].event
    assert final["type"] == "job.completed"
    # The job as GET shows it, our signed copy's URL included: a path under the API's
    # address here, since the tests set no PUBLIC_BASE_URL.
    shown = get_job(api, account, job_id)
    video, shown_video = final["data"]["result"]["video"], shown["result"]["video"]
    asset_id = shown["result"]["media_asset_id"]
    path, _, token = video.pop("url").partition("?token=")
    assert path == f"/v1/media/{asset_id}/content"
    assert token_grants(token, asset_id, runtime.settings.secret_key)
    assert shown_video.pop("url").partition("?token=")[0].endswith(path)
    assert video == shown_video and video["provider_url"]
    assert final["data"] == shown
    listed = _settled(api, account, hook)
    assert [(row["event"], row["seq"]) for row in reversed(listed)] == [
        (event.type, event.seq) for event in written
    ]
    assert {row["id"] for row in listed} == {request.headers["webhook-id"] for request in got}
    assert all(row["status"] == "delivered" and row["attempts"] == 1 for row in listed)


@pytest.mark.usefixtures("dispatching")
def test_a_receiver_answering_500_500_200_gets_three_attempts_of_one_id(
    api: FlaskClient, account: conftest.TestAccount, receiver: Receiver
) -> None:
    url = receiver.endpoint(500, 500)
    everything = receiver.endpoint()
    hook = _create(api, account, url=url, events=["job.completed"])
    _create(api, account, url=everything, events=list(EventType.__args__))
    _completed_job(api, account)
    got = wait_for(lambda: len(receiver.at(url)) >= 3 and receiver.at(url), timeout=30)
    (listed,) = _settled(api, account, hook)
    assert len(receiver.at(url)) == 3
    assert {request.headers["webhook-id"] for request in got} == {listed["id"]}
    assert {request.body for request in got} == {got[0].body}
    verifier = standardwebhooks.Webhook(hook["secret"])
    assert all(verifier.verify(request.body, request.headers) for request in got)
    assert listed["status"] == "delivered"
    assert listed["attempts"] == 3
    assert listed["last_response_code"] == 200
    assert listed["latency_ms"] is not None and listed["next_attempt_at"] is None
    # Subscribed to `job.completed` alone: nothing else came, though other events did.
    assert {request.event["type"] for request in got} == {"job.completed"}
    wait_for(lambda: len({r.event["type"] for r in receiver.at(everything)}) >= 4, timeout=30)


@pytest.mark.usefixtures("dispatching")
def test_a_receiver_that_was_down_gets_every_event_in_order(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime, receiver: Receiver
) -> None:
    url = receiver.endpoint(503, 503, 503, 502)
    _create(api, account, url=url, events=list(EventType.__args__))
    job_id = _completed_job(api, account)
    written = _job_events(runtime, job_id)
    wait_for(
        lambda: len(receiver.at(url)) >= len(written) + 4,
        timeout=30,
        message=lambda: f"{len(receiver.at(url))} requests for {len(written)} events",
    )
    got = receiver.at(url)
    # Each event once it is the job's next: no event is sent before an earlier one is done.
    firsts = list(dict.fromkeys(request.headers["webhook-id"] for request in got))
    assert [request.headers["webhook-id"] for request in got] == sorted(
        (request.headers["webhook-id"] for request in got), key=firsts.index
    )
    assert [
        next(r.event["type"] for r in got if r.headers["webhook-id"] == webhook_id)
        for webhook_id in firsts
    ] == [event.type for event in written]


@pytest.mark.usefixtures("dispatching")
def test_a_4xx_is_not_retried_and_the_next_event_follows(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime, receiver: Receiver
) -> None:
    url = receiver.endpoint(410)
    hook = _create(api, account, url=url, events=list(EventType.__args__))
    job_id = _completed_job(api, account)
    written = _job_events(runtime, job_id)
    listed = wait_for(
        lambda: len(found := _settled(api, account, hook)) == len(written) and found, timeout=30
    )
    first = listed[-1]
    assert (first["event"], first["status"], first["attempts"]) == ("job.queued", "failed", 1)
    assert first["last_response_code"] == 410
    assert all(row["status"] == "delivered" for row in listed[:-1])
    assert len(receiver.at(url)) == len(written)


@pytest.mark.usefixtures("dispatching")
@pytest.mark.usefixtures("dispatching")
def test_the_delivery_log_says_when_the_host_name_does_not_resolve(
    api: FlaskClient, account: conftest.TestAccount
) -> None:
    """It said only "the connection failed", as for a receiver that refuses connections."""
    hook = _create(api, account, url="https://hooks.naive-test.invalid/in")
    _completed_job(api, account)
    (listed,) = wait_for(
        lambda: (found := _deliveries(api, account, hook)) and found[0]["last_error"] and found,
        timeout=30,
        message=lambda: str(_deliveries(api, account, hook)),
    )
    assert listed["last_error"] == "the host name did not resolve (DNS)"
    assert listed["last_response_code"] is None


@pytest.mark.usefixtures("dispatching")
def test_redeliver_sends_the_identical_body_and_id(
    api: FlaskClient, make_account: Callable[..., conftest.TestAccount], receiver: Receiver
) -> None:
    account, other = make_account(), make_account()
    url = receiver.endpoint()
    hook = _create(api, account, url=url, events=["job.completed"])
    _completed_job(api, account)
    (delivered,) = _settled(api, account, hook)
    path = f"/v1/webhook-deliveries/{delivered['id']}/redeliver"
    assert api.post(path, headers=other.headers).status_code == 404
    answer = api.post(path, headers=account.headers)
    assert answer.status_code == 202
    assert answer.get_json()["status"] == "pending"
    first, again = wait_for(lambda: len(receiver.at(url)) == 2 and receiver.at(url), timeout=30)
    assert again.body == first.body
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == delivered["id"]
    assert standardwebhooks.Webhook(hook["secret"]).verify(again.body, again.headers)
    (listed,) = _settled(api, account, hook)
    assert (listed["status"], listed["attempts"]) == ("delivered", 2)
    assert (
        api.get(f"/v1/webhooks/{hook['id']}/deliveries", headers=other.headers).status_code == 404
    )


def test_deleting_a_subscription_deletes_its_log(
    api: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    hook = _create(api, account)
    with runtime.db.transaction() as session:
        deliveries.fan_out(
            session=session,
            now=utcnow(),
            links=deliveries.media_links(runtime.settings, runtime.storage),
        )
    assert api.delete(f"/v1/webhooks/{hook['id']}", headers=account.headers).status_code == 204
    path = f"/v1/webhooks/{hook['id']}/deliveries"
    assert api.get(path, headers=account.headers).status_code == 404


# ---- one POST, against receivers that misbehave -------------------------------------------


class Misbehaving(BaseHTTPRequestHandler):
    """`/slow` never answers; `/huge` answers 200 with an endless body; `/reset` hangs up
    with a TCP reset (a close with a zero linger sends RST)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/slow":
            self.server.release.wait(30)  # type: ignore[attr-defined]
            return
        if self.path == "/reset":
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.connection.close()
            return
        self.send_response(200)
        self.end_headers()
        chunk = b"x" * 65536
        with contextlib.suppress(OSError):
            while not self.server.release.is_set():  # type: ignore[attr-defined]
                self.wfile.write(chunk)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def misbehaving() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    server.daemon_threads = True
    server.release = threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.release.set()  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()


def _post(url: str, *, allow_private: bool = True, timeout: float = 2) -> delivery.Attempt:
    return delivery.post(
        url,
        webhook_id="msg_1",
        secret=webhooks.new_secret(),
        body=b"{}",
        allow_address=address_policy(allow_private=allow_private),
        timeout=timeout,
    )


def test_a_receiver_that_never_answers_is_left_at_the_time_limit(misbehaving: str) -> None:
    attempt = _post(f"{misbehaving}/slow", timeout=1)
    assert (attempt.status_code, attempt.error, attempt.retryable) == (None, "timed out", True)
    assert 1000 <= attempt.latency_ms < 3000


def test_an_endless_answer_is_read_only_to_the_cap(misbehaving: str) -> None:
    attempt = _post(f"{misbehaving}/huge")
    assert attempt.delivered and attempt.latency_ms < 2000


def test_a_closed_port_is_a_refused_connection_worth_retrying() -> None:
    """It said "the connection failed", as for a reset: a receiver that is down went unsaid."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    attempt = _post(f"http://127.0.0.1:{port}/hook")
    assert (attempt.error, attempt.retryable) == ("the connection was refused", True)


def test_a_reset_connection_is_said_so_and_retried(misbehaving: str) -> None:
    attempt = _post(f"{misbehaving}/reset")
    assert (attempt.status_code, attempt.error, attempt.retryable) == (
        None,
        "the connection was reset",
        True,
    )


def test_a_host_name_that_does_not_resolve_is_said_so_and_retried() -> None:
    attempt = _post("http://receiver.naive-test.invalid/hook")  # RFC 6761: never resolves
    assert (attempt.status_code, attempt.error, attempt.retryable) == (
        None,
        "the host name did not resolve (DNS)",
        True,
    )


def test_a_private_address_is_not_connected_to_under_the_default_policy(misbehaving: str) -> None:
    attempt = _post(f"{misbehaving}/huge", allow_private=False)
    assert attempt.status_code is None and not attempt.retryable
    assert attempt.error == delivery.REFUSED_ADDRESS


@pytest.mark.parametrize(
    ("status", "retryable"), [(500, True), (503, True), (408, True), (429, True), (400, False),
                              (404, False), (410, False)],
)  # fmt: skip
def test_which_answers_are_retried(status: int, retryable: bool) -> None:
    attempt = delivery.Attempt(status_code=status, error=None, latency_ms=1)
    assert attempt.retryable is retryable and not attempt.delivered


def test_the_default_retry_schedule_spans_a_day() -> None:
    schedule = load_settings({}).webhook_retry_schedule
    assert sum(schedule) >= 24 * 3600
    assert load_settings({"WEBHOOK_RETRY_SCHEDULE": "1, 2.5"}).webhook_retry_schedule == (1, 2.5)


@pytest.mark.parametrize("raw", ["0", "5,-1", "5,,6", "soon", "inf"])
def test_a_bad_retry_schedule_is_refused(raw: str) -> None:
    with pytest.raises(ConfigError, match="WEBHOOK_RETRY_SCHEDULE"):
        load_settings({"WEBHOOK_RETRY_SCHEDULE": raw})


# ---- a job's own webhook ----------------------------------------------------------------


def _generate(
    api: FlaskClient,
    account: conftest.TestAccount,
    headers: dict[str, str] | None = None,
    **body: Any,
) -> TestResponse:
    body = {"model": KLING_T2V, "input": {"prompt": "A kite over dunes"}, **body}
    return api.post("/v1/video/generate", json=body, headers={**account.headers, **(headers or {})})


@pytest.mark.usefixtures("dispatching")
def test_a_jobs_own_webhook_gets_the_events_it_names_signed_with_its_secret(
    api: FlaskClient, account: conftest.TestAccount, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    body = {"webhook_url": url, "webhook_events": ["job.queued", "job.completed"]}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    answer = _generate(api, account, headers={**key, "Prefer": "wait=10"}, **body)
    assert answer.status_code == 202, answer.get_json()
    assert "Preference-Applied" not in answer.headers
    accepted = answer.get_json()
    secret, job_id = accepted["webhook_secret"], accepted["job_id"]
    assert secret.startswith("whsec_")
    assert wait_for_job(api, account, job_id)["status"] == "completed"
    got = wait_for(
        lambda: len(receiver.at(url)) >= 2 and receiver.at(url),
        timeout=30,
        message=lambda: f"{len(receiver.at(url))} of 2 events arrived",
    )
    assert [request.event["type"] for request in got] == ["job.queued", "job.completed"]
    verifier = standardwebhooks.Webhook(secret)
    for request in got:
        assert verifier.verify(request.body, request.headers) == request.event
        assert request.event["data"]["id"] == job_id
    # Not one of the account's subscriptions; a replay shows the same secret.
    assert api.get("/v1/webhooks", headers=account.headers).get_json()["data"] == []
    replayed = _generate(api, account, headers=key, **body)
    assert replayed.status_code == 202
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.get_json()["webhook_secret"] == secret
    # Without one, the answer has no secret.
    assert _generate(api, account).get_json()["webhook_secret"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"webhook_url": "ftp://example.com/hook"}, "webhook_url"),
        ({"webhook_url": RECEIVER, "webhook_events": []}, "webhook_events"),
        ({"webhook_url": RECEIVER, "webhook_events": ["job.started"]}, "webhook_events.0"),
        ({"webhook_events": ["job.completed"]}, "webhook_events"),
        ({"webhook_url": "https://user:pass@example.com/hook"}, "webhook_url"),
    ],
)
def test_a_bad_job_webhook_is_refused_naming_the_field(
    api: FlaskClient, account: conftest.TestAccount, body: dict[str, Any], field: str
) -> None:
    answer = _generate(api, account, **body)
    assert answer.status_code == 422
    assert field in answer.get_json()["error"]["fields"]


def test_a_job_webhook_passes_the_address_policy(
    public_only: Flask, account: conftest.TestAccount
) -> None:
    answer = _generate(public_only.test_client(), account, webhook_url="http://10.1.2.3/hook")
    assert answer.status_code == 422
    assert "non-public" in answer.get_json()["error"]["fields"]["webhook_url"]
