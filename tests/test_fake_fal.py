"""The fake fal server: fal's protocol as the real fal-client sees it, faults, webhooks, platform.

The server runs as a real subprocess (`python -m tests.fake_fal`). fal-client reads its hosts
when imported, so it is never imported here: `tests/fal_driver.py` runs it in a child process.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from shared.catalog import all_models
from shared.media.probe import probe_video
from tests.fake_fal import FakeFalServer, WebhookSigner
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(__file__).with_name("fal_driver.py")
KEY = "fake-key-id:fake-key-secret"
T2V = "fal-ai/kling-video/v3/pro/text-to-video"
I2V = "fal-ai/kling-video/v3/pro/image-to-video"
APP = "fal-ai/kling-video"
WAN = "fal-ai/wan/v2.7/text-to-video"
MINIMAX = "fal-ai/minimax-video/video-01-live"


# --- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The fake fal as a subprocess; its JSON facts line."""
    data_dir = tmp_path_factory.mktemp("fake-fal")
    log = (data_dir / "server.log").open("w")
    options = ["--port", "0", "--data-dir", str(data_dir), "--key", KEY, "--latency", "2"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_fal", *options, "--webhook-retry-seconds", "0.2"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env={**os.environ, "NO_PROXY": "localhost,127.0.0.1"},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"the fake fal exited early: {(data_dir / 'server.log').read_text()}"
        yield json.loads(line)
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        process.stdout.close()  # type: ignore[union-attr]
        log.close()


@pytest.fixture(scope="module")
def api(fake: dict[str, Any]) -> Iterator[httpx.Client]:
    """A raw HTTPS client for the fake, trusting its CA, with the right key."""
    tls = ssl.create_default_context(cafile=fake["ca_file"])
    headers = {"Authorization": f"Key {KEY}"}
    with httpx.Client(base_url=fake["base_url"], verify=tls, headers=headers) as client:
        yield client


def fal(fake: dict[str, Any], *steps: dict[str, Any], key: str | None = None) -> list[Any]:
    """Run `steps` through the real fal-client in a child process; one answer per step."""
    env = {
        **os.environ,
        "FAL_QUEUE_RUN_HOST": fake["queue_host"],
        "FAL_RUN_HOST": fake["run_host"],
        "SSL_CERT_FILE": fake["ca_file"],
        "FAL_KEY": KEY,
        "NO_PROXY": "localhost,127.0.0.1",
    }
    command = json.dumps({"key": key, "steps": list(steps)})
    done = subprocess.run(
        [sys.executable, str(DRIVER), command], env=env, capture_output=True, text=True, timeout=90
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def submit(prompt: str, app: str = T2V, **extra: Any) -> dict[str, Any]:
    return {"op": "submit", "app": app, "arguments": {"prompt": prompt, "duration": "3"}, **extra}


def step(op: str, **extra: Any) -> dict[str, Any]:
    return {"op": op, "app": APP, "request_id": "$last", **extra}


def stats(api: httpx.Client, request_id: str) -> dict[str, Any]:
    return api.get("/_fake/stats").json()["requests"][request_id]


def raw_submit(api: httpx.Client, prompt: str, **params: str) -> dict[str, Any]:
    response = api.post(f"/{T2V}", json={"prompt": prompt, "duration": "3"}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def raw_status(api: httpx.Client, request_id: str) -> dict[str, Any]:
    response = api.get(f"/{APP}/requests/{request_id}/status", params={"logs": "1"})
    assert response.status_code in (200, 202), response.text
    return response.json()


def wait_status(api: httpx.Client, request_id: str, status: str) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        body = raw_status(api, request_id)
        return body if body["status"] == status else None

    return wait_for(reached, timeout=20, message=f"{request_id} never reached {status}")


class Receiver:
    """A plain-http webhook receiver that records every POST and can fail the first ones."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    failing = receiver.failures.get(self.path, 0) > 0
                    receiver.failures[self.path] = receiver.failures.get(self.path, 0) - 1
                    receiver.calls.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                            "answered": 500 if failing else 200,
                            "at": time.time(),
                        }
                    )
                self.send_response(500 if failing else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, name: str, *, fail: int = 0) -> str:
        self.failures[f"/hook/{name}"] = fail
        return f"http://127.0.0.1:{self.server.server_port}/hook/{name}"

    def received(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [call for call in self.calls if call["path"] == f"/hook/{name}"]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    hooks = Receiver()
    hooks.thread.start()
    yield hooks
    hooks.server.shutdown()
    hooks.server.server_close()


def signing_kid(jwks: dict[str, Any], headers: dict[str, str], body: bytes) -> str | None:
    """The kid of the JWKS key that verifies a callback's signature, or None (as a receiver)."""
    message = "\n".join(
        [
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        ]
    ).encode()
    signature = bytes.fromhex(headers["x-fal-webhook-signature"])
    for jwk in jwks["keys"]:
        public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(jwk["x"] + "=="))
        try:
            public.verify(signature, message)
        except InvalidSignature:
            continue
        return jwk["kid"]
    return None


# --- the queue through fal-client ------------------------------------------------------------


def test_lifecycle_through_fal_client(
    fake: dict[str, Any], api: httpx.Client, tmp_path: Path
) -> None:
    prompt = "A calm lake at dawn [sim latency=2] [fal queue=2]"
    options = {"priority": "low", "hint": "gpu-a", "start_timeout": 30}
    submitted, statuses, result = fal(
        fake, submit(prompt, **options), step("follow"), step("result")
    )

    handle = submitted["ok"]
    request_id = handle["request_id"]
    short = f"{fake['base_url']}/{APP}/requests/{request_id}"
    assert handle["status_url"] == f"{short}/status"
    assert handle["response_url"] == short
    assert handle["cancel_url"] == f"{short}/cancel"

    kinds = [status["type"] for status in statuses["ok"]]
    assert kinds[0] == "Queued" and kinds[-1] == "Completed"
    assert "InProgress" in kinds
    assert kinds == sorted(kinds, key=["Queued", "InProgress", "Completed"].index)
    positions = [status["position"] for status in statuses["ok"] if status["type"] == "Queued"]
    assert positions == sorted(positions, reverse=True)
    running = [status for status in statuses["ok"] if status["type"] == "InProgress"]
    messages = [log["message"] for status in running for log in status["logs"]]
    assert any(message.startswith("progress: ") for message in messages)
    assert all(
        {"message", "level", "source", "timestamp"} <= set(log) for log in running[0]["logs"]
    )
    final = statuses["ok"][-1]
    assert final["error"] is None and final["metrics"]["inference_time"] > 0

    video = result["ok"]["video"]
    assert video["content_type"] == "video/mp4"
    assert video["url"] == f"{fake['base_url']}/files/{request_id}.mp4"
    download = httpx.get(video["url"], verify=ssl.create_default_context(cafile=fake["ca_file"]))
    assert download.status_code == 200 and len(download.content) == video["file_size"]
    path = tmp_path / video["file_name"]
    path.write_bytes(download.content)
    info = probe_video(path)
    assert info.content_type == "video/mp4" and abs(info.duration_seconds - 3) < 0.2

    partial = api.get(f"/files/{request_id}.mp4", headers={"Range": "bytes=0-99"})
    assert partial.status_code == 206 and len(partial.content) == 100

    recorded = stats(api, request_id)
    assert recorded["endpoint"] == T2V
    assert (recorded["priority"], recorded["hint"], recorded["start_timeout"]) == (
        "low",
        "gpu-a",
        30.0,
    )
    assert recorded["status_calls"] >= len(statuses["ok"])
    assert recorded["result_calls"] == 1


def test_bad_key_is_401(fake: dict[str, Any], api: httpx.Client) -> None:
    (answer,) = fal(fake, submit("A cat [sim latency=1]"), key="wrong:key")
    assert answer["error"]["status_code"] == 401

    response = api.get(f"/{APP}/requests/{uuid.uuid4()}/status", headers={"Authorization": ""})
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)
    assert response.headers["x-fal-request-id"]


def test_validation_errors_are_422_and_unknown_apps_404(fake: dict[str, Any]) -> None:
    no_image = {"op": "submit", "app": I2V, "arguments": {"image_url": "https://x/y.png"}}
    int_duration = {"op": "submit", "app": T2V, "arguments": {"prompt": "A dog", "duration": 5}}
    unknown = {"op": "submit", "app": "fal-ai/nope/v1", "arguments": {"prompt": "A dog"}}
    empty, missing_image, duration, forced, missing_app = fal(
        fake, submit(""), no_image, int_duration, submit("A dog [fal submit=422]"), unknown
    )

    for answer, field in [
        (empty, "prompt"),
        (missing_image, "start_image_url"),
        (duration, "duration"),
        (forced, "prompt"),
    ]:
        error = answer["error"]
        assert error["class"] == "FalClientHTTPError" and error["status_code"] == 422
        assert isinstance(error["message"], list)
        assert error["message"][0]["loc"] == ["body", field]
        assert error["message"][0]["type"] == "value_error"
    assert missing_app["error"]["status_code"] == 404
    assert "not found" in missing_app["error"]["message"]


def test_submit_503_raises_at_once_and_ingress_errors_are_retried(
    fake: dict[str, Any], api: httpx.Client
) -> None:
    once = submit(f"A fox {uuid.uuid4()} [fal submit=503x1] [sim latency=1]")
    refused, accepted, ingress, limited = fal(
        fake,
        once,
        once,  # the same body: only the first attempt was refused, so fal-client did not retry
        submit(f"A fox {uuid.uuid4()} [fal submit=502-ingressx2] [sim latency=1]"),
        submit(f"A fox {uuid.uuid4()} [fal submit=429x2] [sim latency=1]"),
    )
    error = refused["error"]
    assert error["status_code"] == 503 and error["error_type"] == "runner_disconnected"
    assert error["request_id"]
    assert "request_id" in accepted["ok"]
    assert "request_id" in ingress["ok"]
    assert "request_id" in limited["ok"]

    page = api.post(f"/{T2V}", json={"prompt": f"A fox {uuid.uuid4()} [fal submit=502-ingress]"})
    assert page.status_code == 502 and "nginx" in page.text
    assert "x-fal-request-id" not in page.headers
    outage = api.post(f"/{T2V}", json={"prompt": f"A fox {uuid.uuid4()} [fal submit=503]"})
    assert outage.status_code == 503 and outage.headers["X-Fal-Error-Type"] == "runner_disconnected"
    assert outage.headers["x-fal-request-id"]


def test_status_and_result_faults(fake: dict[str, Any], api: httpx.Client) -> None:
    prompt = "An owl [sim latency=1] [fal status=502-ingressx2 result=500x1]"
    submitted, first, _, failed_result, result = fal(
        fake, submit(prompt), step("status"), step("follow"), step("result"), step("result")
    )
    assert "type" in first["ok"]  # fal-client retried the ingress 502s
    assert failed_result["error"]["status_code"] == 500  # a 500 with a request id: no retry
    assert "video" in result["ok"]
    assert stats(api, submitted["ok"]["request_id"])["result_calls"] == 2

    submitted, refused, limited = fal(
        fake, submit("An owl [sim latency=1] [fal status=503x1]"), step("status"), step("status")
    )
    assert refused["error"]["status_code"] == 503
    assert limited["ok"]["type"] in ("Queued", "InProgress", "Completed")
    assert stats(api, submitted["ok"]["request_id"])["status_calls"] == 2


def test_completed_with_error(fake: dict[str, Any]) -> None:
    prompt = (
        "A storm [sim latency=1] "
        "[fal error='model exploded' error_type=content_policy_violation error_status=422]"
    )
    _, statuses, result = fal(fake, submit(prompt), step("follow"), step("result"))
    final = statuses["ok"][-1]
    assert final["type"] == "Completed"
    assert (final["error"], final["error_type"]) == ("model exploded", "content_policy_violation")
    error = result["error"]
    assert (error["status_code"], error["message"]) == (422, "model exploded")
    assert error["error_type"] == "content_policy_violation"

    _, statuses, result = fal(
        fake, submit("A storm [sim latency=1 fail='boom']"), step("follow"), step("result")
    )
    assert (statuses["ok"][-1]["error"], statuses["ok"][-1]["error_type"]) == (
        "boom",
        "internal_server_error",
    )
    assert result["error"]["status_code"] == 500


def test_results_carry_the_billable_units_header(api: httpx.Client) -> None:
    """fal's `x-fal-billable-units`: the simulator's units (seconds of output) by default,
    what `units=` says, or none; never on an error's answer."""

    def result_headers(prompt: str) -> httpx.Headers:
        request_id = raw_submit(api, prompt)["request_id"]
        wait_status(api, request_id, "COMPLETED")
        return api.get(f"/{APP}/requests/{request_id}").headers

    assert result_headers("Dunes [sim latency=0.5]")["x-fal-billable-units"] == "3"
    assert result_headers("Dunes [sim latency=0.5] [fal units=7.25]")["x-fal-billable-units"] == (
        "7.25"
    )
    assert "x-fal-billable-units" not in result_headers("Dunes [sim latency=0.5] [fal units=none]")
    assert "x-fal-billable-units" not in result_headers("Dunes [sim latency=0.5] [fal error=x]")


def test_slow_queue_positions_count_down_then_cancel_while_running(api: httpx.Client) -> None:
    request_id = raw_submit(api, "A queue [sim latency=8] [fal queue=4]")["request_id"]
    positions: list[int] = []

    def left_queue() -> bool:
        body = raw_status(api, request_id)
        if body["status"] == "IN_QUEUE":
            positions.append(body["queue_position"])
            return False
        return True

    wait_for(left_queue, timeout=10, interval=0.1)
    assert positions[0] == 4 and positions == sorted(positions, reverse=True)
    assert len(set(positions)) >= 3

    cancelled = api.put(f"/{APP}/requests/{request_id}/cancel")
    assert (cancelled.status_code, cancelled.json()) == (202, {"status": "CANCELLATION_REQUESTED"})
    body = raw_status(api, request_id)
    assert body["status"] == "COMPLETED" and body["error_type"] == "request_cancelled"


def test_cancel_queued_completed_unknown_and_ignored(
    fake: dict[str, Any], api: httpx.Client
) -> None:
    submitted, cancelled, status = fal(
        fake, submit("A wave [sim latency=20]"), step("cancel"), step("status")
    )
    assert cancelled == {"ok": None}
    assert status["ok"]["type"] == "Completed"
    assert (status["ok"]["error"], status["ok"]["error_type"]) == (
        "Request was cancelled",
        "request_cancelled",
    )
    result = api.get(f"/{APP}/requests/{submitted['ok']['request_id']}")
    assert result.status_code == 400
    assert result.json() == {"detail": "Request was cancelled", "error_type": "request_cancelled"}

    submitted, _, late = fal(fake, submit("A wave [sim latency=1]"), step("follow"), step("cancel"))
    assert late["error"]["status_code"] == 400
    again = api.put(f"/{APP}/requests/{submitted['ok']['request_id']}/cancel")
    assert (again.status_code, again.json()) == (400, {"status": "ALREADY_COMPLETED"})

    unknown = api.put(f"/{APP}/requests/{uuid.uuid4()}/cancel")
    assert (unknown.status_code, unknown.json()) == (404, {"status": "NOT_FOUND"})

    request_id = raw_submit(api, "A wave [sim latency=1.5] [fal cancel=ignore]")["request_id"]
    wait_status(api, request_id, "IN_PROGRESS")
    assert api.put(f"/{APP}/requests/{request_id}/cancel").status_code == 202
    final = wait_status(api, request_id, "COMPLETED")
    assert "error" not in final
    assert stats(api, request_id)["cancel_calls"] == 1


def test_start_timeout(fake: dict[str, Any], api: httpx.Client) -> None:
    submitted, statuses, result = fal(
        fake,
        submit("A slow start [sim latency=15]", start_timeout=1.5),
        step("follow"),
        step("result"),
    )
    final = statuses["ok"][-1]
    assert {status["type"] for status in statuses["ok"][:-1]} == {"Queued"}
    assert (final["type"], final["error_type"]) == ("Completed", "request_timeout")
    assert result["error"]["status_code"] == 504  # not retried: the timeout was the user's

    response = api.get(f"/{APP}/requests/{submitted['ok']['request_id']}")
    assert response.status_code == 504
    assert response.headers["X-Fal-Request-Timeout-Type"] == "user"
    assert response.json() == {
        "detail": "Request timed out before starting",
        "error_type": "request_timeout",
    }


# --- webhooks ---------------------------------------------------------------------------------


def test_webhook_is_delivered_and_signed(
    fake: dict[str, Any], api: httpx.Client, receiver: Receiver
) -> None:
    url = receiver.url("signed")
    (submitted,) = fal(fake, submit("A bird [sim latency=1]", webhook_url=url))
    request_id = submitted["ok"]["request_id"]
    (call,) = wait_for(lambda: receiver.received("signed"), timeout=20)

    jwks = api.get("/.well-known/jwks.json").json()
    assert signing_kid(jwks, call["headers"], call["body"]) == jwks["keys"][0]["kid"]
    assert call["headers"]["x-fal-webhook-request-id"] == request_id
    assert abs(int(call["headers"]["x-fal-webhook-timestamp"]) - time.time()) < 300
    assert "x-fal-webhook-key-id" not in call["headers"]
    body = json.loads(call["body"])
    assert body["request_id"] == body["gateway_request_id"] == request_id
    assert body["status"] == "OK" and "error" not in body
    assert body["payload"]["video"]["url"].endswith(f"/files/{request_id}.mp4")
    assert wait_for(lambda: stats(api, request_id)["webhook_deliveries"] == 1, timeout=5)


def test_webhook_variants(api: httpx.Client, receiver: Receiver) -> None:
    def start(name: str, prompt: str, *, fail: int = 0) -> dict[str, Any]:
        return raw_submit(api, prompt, fal_webhook=receiver.url(name, fail=fail))

    twice = start("twice", "A [sim latency=1] [fal webhook=twice]")
    assert twice["gateway_request_id"] == twice["request_id"]
    retried = start("retry", "A [sim latency=1]", fail=1)
    failed = start("error", "A [sim latency=1] [fal error='nope']")
    silent = start("none", "A [sim latency=1] [fal webhook=none]")
    delayed = start("delay", "A [sim latency=1] [fal webhook=delay=1]")
    cancelled = start("cancelled", "A [sim latency=20]")
    assert api.put(f"/{APP}/requests/{cancelled['request_id']}/cancel").status_code == 202

    wait_for(lambda: len(receiver.received("twice")) == 2, timeout=20)
    first, second = receiver.received("twice")
    assert first["body"] == second["body"]

    attempts = wait_for(
        lambda: len(receiver.received("retry")) == 2 and receiver.received("retry"), timeout=20
    )
    assert [call["answered"] for call in attempts] == [500, 200]
    assert wait_for(lambda: stats(api, retried["request_id"])["webhook_attempts"] == 2, timeout=5)
    assert stats(api, retried["request_id"])["webhook_deliveries"] == 1

    (error_call,) = wait_for(lambda: receiver.received("error"), timeout=20)
    error_body = json.loads(error_call["body"])
    assert (error_body["request_id"], error_body["status"]) == (failed["request_id"], "ERROR")
    assert error_body["error"] == "Invalid status code: 500"
    assert error_body["payload"] == {"detail": "nope", "error_type": "internal_server_error"}

    (delay_call,) = wait_for(lambda: receiver.received("delay"), timeout=20)
    submitted_at = stats(api, delayed["request_id"])["submitted_at"]
    assert delay_call["at"] - submitted_at >= 1.9  # 1 s to complete + 1 s of delay

    (cancel_call,) = wait_for(lambda: receiver.received("cancelled"), timeout=20)
    assert json.loads(cancel_call["body"])["payload"]["error_type"] == "request_cancelled"

    # `none` completed at the same time as the others, whose callbacks have all arrived.
    assert raw_status(api, silent["request_id"])["status"] == "COMPLETED"
    assert receiver.received("none") == []


def test_rotate_key(fake: dict[str, Any], api: httpx.Client, receiver: Receiver) -> None:
    before = api.get("/.well-known/jwks.json").json()["keys"]
    kid = api.post("/_fake/rotate-key").json()["kid"]
    after = api.get("/.well-known/jwks.json").json()
    assert [key["kid"] for key in after["keys"]] == [kid] + [key["kid"] for key in before]
    assert after["keys"][0] | {"x": "", "kid": ""} == {
        "kty": "OKP",
        "crv": "Ed25519",
        "x": "",
        "kid": "",
        "use": "sig",
        "alg": "EdDSA",
    }

    raw_submit(api, "A [sim latency=1]", fal_webhook=receiver.url("rotated"))
    (call,) = wait_for(lambda: receiver.received("rotated"), timeout=20)
    assert signing_kid(after, call["headers"], call["body"]) == kid
    assert signing_kid({"keys": after["keys"][1:]}, call["headers"], call["body"]) is None


def test_webhook_signer_crafts_valid_forged_and_stale_callbacks() -> None:
    signer, forger = WebhookSigner.generate(), WebhookSigner.generate()
    body = b'{"request_id": "r1"}'
    valid = {k.lower(): v for k, v in signer.sign(body, "r1").items()}
    forged = {k.lower(): v for k, v in forger.sign(body, "r1").items()}
    stale = {k.lower(): v for k, v in signer.sign(body, "r1", timestamp=1000).items()}
    assert signing_kid(signer.jwks(), valid, body) == signer.kid
    assert signing_kid(signer.jwks(), forged, body) is None
    assert stale["x-fal-webhook-timestamp"] == "1000"
    assert signing_kid(signer.jwks(), stale, body) == signer.kid  # valid, but too old to accept
    assert signing_kid(signer.jwks(), valid, body + b" ") is None


# --- platform API and outages ----------------------------------------------------------------


def test_platform_models(api: httpx.Client) -> None:
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 4}
    while True:
        page = api.get("/v1/models", params=params).json()
        seen += [model["endpoint_id"] for model in page["models"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        params["cursor"] = page["next_cursor"]
    assert seen == [model.id for model in all_models()]

    i2v = api.get("/v1/models", params={"category": "image-to-video"}).json()["models"]
    assert i2v and {model["metadata"]["category"] for model in i2v} == {"image-to-video"}
    assert i2v[0]["metadata"]["status"] == "active"
    assert {"display_name", "description"} <= set(i2v[0]["metadata"])
    chosen = api.get("/v1/models", params=[("endpoint_id", WAN), ("endpoint_id", T2V)]).json()
    assert {model["endpoint_id"] for model in chosen["models"]} == {WAN, T2V}
    found = api.get("/v1/models", params={"q": "wan"}).json()["models"]
    assert [model["endpoint_id"] for model in found] == [WAN]
    assert api.get("/v1/models", params={"cursor": "garbage"}).status_code == 400


def test_platform_pricing_and_outage(api: httpx.Client) -> None:
    response = api.get("/v1/models/pricing", params={"endpoint_id": f"{WAN},{T2V},{MINIMAX}"})
    assert response.status_code == 200
    body = response.json()
    assert (body["next_cursor"], body["has_more"]) == (None, False)
    prices = {price["endpoint_id"]: price for price in body["prices"]}
    assert prices[WAN] == {
        "endpoint_id": WAN,
        "unit_price": 0.08,
        "unit": "second",
        "currency": "USD",
    }
    assert (prices[T2V]["unit_price"], prices[T2V]["unit"]) == (0.07, "second")
    assert (prices[MINIMAX]["unit_price"], prices[MINIMAX]["unit"]) == (0.5, "video")

    many = ",".join(f"fal-ai/model-{n}" for n in range(51))
    assert api.get("/v1/models/pricing", params={"endpoint_id": many}).status_code == 400
    assert api.get("/v1/models/pricing").status_code == 400
    unauthorized = api.get("/v1/models", headers={"Authorization": "Key nope"})
    assert unauthorized.status_code == 401

    assert api.post("/_fake/platform-down", json={"seconds": 1}).status_code == 200
    assert api.get("/v1/models").status_code == 503
    wait_for(lambda: api.get("/v1/models").status_code == 200, timeout=5)


def test_outage_window(fake: dict[str, Any], api: httpx.Client) -> None:
    assert api.post("/_fake/outage", json={"seconds": 60, "status": 503}).status_code == 200
    response = api.get(f"/{APP}/requests/{uuid.uuid4()}/status")
    assert response.status_code == 503
    assert response.headers["x-fal-request-id"]
    assert response.json()["error_type"] == "runner_disconnected"
    (refused,) = fal(fake, submit("A [sim latency=1]"))
    assert refused["error"]["status_code"] == 503
    assert api.get("/v1/models").status_code == 200  # the platform API is not the queue

    assert api.post("/_fake/outage", json={"seconds": 0}).status_code == 200  # over now
    assert api.post(f"/{T2V}", json={"prompt": "A [sim latency=1]"}).status_code == 200

    assert api.post("/_fake/outage", json={"seconds": 0.5, "status": 500}).status_code == 200
    assert api.post(f"/{T2V}", json={"prompt": "A [sim latency=1]"}).status_code == 500
    wait_for(lambda: api.post(f"/{T2V}", json={"prompt": "A"}).status_code == 200, timeout=5)


def test_in_process_server_with_a_prices_file(tmp_path: Path) -> None:
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({WAN: {"unit_price": 0.12, "unit": "second"}}))
    with FakeFalServer(tmp_path / "data", "k2", prices_file=prices) as server:
        info = server.info()
        assert info == {
            "port": server.port,
            "base_url": f"https://localhost:{server.port}",
            "queue_host": f"localhost:{server.port}",
            "run_host": f"localhost:{server.port}",
            "ca_file": str(tmp_path / "data" / "ca.pem"),
            "jwks_url": f"https://localhost:{server.port}/.well-known/jwks.json",
            "platform_url": f"https://localhost:{server.port}/v1",
            "key": "k2",
        }
        tls = ssl.create_default_context(cafile=info["ca_file"])
        with httpx.Client(verify=tls, headers={"Authorization": "Key k2"}) as client:
            response = client.get(
                f"{info['platform_url']}/models/pricing", params={"endpoint_id": f"{WAN},{T2V}"}
            )
            assert response.json()["prices"] == [
                {"endpoint_id": WAN, "unit_price": 0.12, "unit": "second", "currency": "USD"}
            ]
            assert client.get(info["jwks_url"]).json()["keys"][0]["kid"] == server.signer.kid
