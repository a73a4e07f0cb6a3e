"""The fal path against a fal that is not ours (issue 11, items 11-15), end to end: the real
worker and API, the real fal-client, the fake fal server over HTTPS sending its callbacks
to the API over HTTP. Each test says which item it proves."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.jobs.models import EarlyCallback
from shared.providers.base import ProviderError
from shared.providers.fal_protocol import callback_outcome, request_failure
from shared.runtime import Runtime
from tests import conftest
from tests.fake_fal import FakeFalServer, WebhookSigner
from tests.helpers import fal_stats, generate, job_entries, tagged, wait_for_job
from tests.stack import fal_env, free_port, running_worker, serving
from tests.waiting import wait_for

RESULT_RETRY_SECONDS = 3
# Tests of jobs that end by polling use a model that no test delivers: with no render
# history, its safety polls are paced by POLL_MAX_SECONDS, not by a median of renders.
UNRENDERED = "fal-ai/minimax-video/video-01-live"


@dataclass
class Stack:
    client: FlaskClient
    url: str  # the API over HTTP, where the fake sends its callbacks
    env: dict[str, str]


@pytest.fixture(scope="module")
def stack(
    fake_fal: FakeFalServer,
    make_app: Callable[..., Flask],
    test_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """API and worker on fal with webhooks on; `[fal webhook=none]` makes a job poll only."""
    port = free_port()
    env = {
        **fal_env(fake_fal),
        "CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-hostile-fal",
        "FAL_WEBHOOK_URL": f"http://127.0.0.1:{port}/v1/webhooks/fal",
        "RESULT_RETRY_SECONDS": str(RESULT_RETRY_SECONDS),
    }
    log = tmp_path_factory.mktemp("hostile-fal-worker") / "worker.log"
    with running_worker({**test_env, **env}, log):
        app = make_app(**env)
        with serving(app, port) as url:
            yield Stack(app.test_client(), url, env)


def _at(job: dict[str, Any], field: str) -> float:
    return datetime.fromisoformat(job[field]).timestamp()


def _at_provider(stack: Stack, account: conftest.TestAccount, job_id: str) -> str:
    """Wait until the worker has recorded the job's fal request id; return it."""

    def recorded() -> str | None:
        job = stack.client.get(f"/v1/jobs/{job_id}", headers=account.headers).json
        return job["provider_request_id"]

    return wait_for(recorded, timeout=15)


def _signed_post(
    url: str, request_id: str, body: bytes, signer: WebhookSigner, timeout: float = 10
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **signer.sign(body, request_id)}
    return httpx.post(f"{url}/v1/webhooks/fal", content=body, headers=headers, timeout=timeout)


# ---- 11: every documented callback shape; a verified callback never gets a 500 ----------


def test_an_ok_callback_with_a_null_payload_fetches_the_result_at_once(
    stack: Stack, account: conftest.TestAccount, runtime: Runtime, fake_fal: FakeFalServer
) -> None:
    accepted = generate(
        stack.client, account, tagged("No payload [sim latency=1] [fal webhook=unserializable]")
    )
    job = wait_for_job(stack.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed", job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}
    stats = fal_stats(fake_fal, job["provider_request_id"])
    # Answered 200 on the first attempt (fal would retry a 500 for two hours); the result
    # came through the queue API.
    assert (stats["webhook_attempts"], stats["webhook_deliveries"]) == (1, 1)
    assert stats["result_calls"] >= 1


# Signed callbacks that carry no usable video: fal's for output it could not serialise,
# outputs without a video, and bodies of shapes fal does not document.
UNUSABLE = [
    {"status": "OK", "payload": None, "payload_error": "Response payload is not JSON"},
    {"status": "OK", "payload": {"images": [{"url": "https://x.invalid/a.png"}]}},
    {"status": "OK", "payload": {"video": {"url": 42}}},
    {"status": "DONE", "payload": {}},
    "not json at all",
]


def test_a_verified_callback_without_a_usable_video_polls_the_job_now(
    stack: Stack, account: conftest.TestAccount, runtime: Runtime, fake_fal: FakeFalServer
) -> None:
    accepted = generate(
        stack.client, account, tagged("Odd hooks [sim latency=3] [fal webhook=none]")
    )
    request_id = _at_provider(stack, account, accepted["job_id"])
    for shape in UNUSABLE:
        polls = fal_stats(fake_fal, request_id)["status_calls"]
        body = json.dumps({"request_id": request_id, **shape}) if isinstance(shape, dict) else shape
        answer = _signed_post(stack.url, request_id, body.encode(), fake_fal.signer)
        assert (answer.status_code, answer.json()) == (200, {"status": "polling"}), shape
        wait_for(lambda n=polls: fal_stats(fake_fal, request_id)["status_calls"] > n, timeout=5)
    job = wait_for_job(stack.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed", job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}


def test_an_error_callback_without_a_payload_fails_the_job_with_a_plain_message(
    stack: Stack, account: conftest.TestAccount, runtime: Runtime, fake_fal: FakeFalServer
) -> None:
    accepted = generate(
        stack.client, account, tagged("Bare error [sim latency=5] [fal webhook=none]")
    )
    request_id = _at_provider(stack, account, accepted["job_id"])
    error = {"status": "ERROR", "payload": None, "error": "Invalid status code: 500"}
    body = json.dumps({"request_id": request_id, **error}).encode()
    answer = _signed_post(stack.url, request_id, body, fake_fal.signer)
    assert (answer.status_code, answer.json()) == (200, {"status": "failed"})
    job = wait_for_job(stack.client, account, accepted["job_id"])
    message = "fal failed the request (HTTP 500)"
    assert job["error"] == {"code": "provider_error", "message": message}
    assert job_entries(runtime, job["id"]) == {"hold": [350], "release": [350]}


@pytest.mark.parametrize(
    ("callback", "expected"),
    [
        (  # fal's documented ERROR: the result's 422 as payload, its status in `error`
            {
                "status": "ERROR",
                "error": "Invalid status code: 422",
                "payload": {"detail": [{"loc": ["body", "duration"], "msg": "bad", "type": "x"}]},
            },
            ("invalid_input", "The model refused the input: duration: bad"),
        ),
        (  # a request error: flat detail and error_type
            {
                "status": "ERROR",
                "error": "Invalid status code: 504",
                "payload": {"detail": "Request timed out", "error_type": "request_timeout"},
            },
            ("provider_timeout", "Request timed out"),
        ),
        (
            {"status": "ERROR", "error": "Runner crashed", "payload": None},
            ("provider_error", "Runner crashed"),
        ),
        (  # an odd detail is shown as JSON, never as a Python repr
            {
                "status": "ERROR",
                "error": "Invalid status code: 500",
                "payload": {"detail": {"a": 1}},
            },
            ("provider_error", '{"a": 1}'),
        ),
    ],
)
def test_one_mapping_reads_every_documented_error_callback(
    callback: dict[str, Any], expected: tuple[str, str]
) -> None:
    outcome = callback_outcome(callback["status"], callback["payload"], callback["error"])
    assert isinstance(outcome, ProviderError)
    assert (outcome.code, str(outcome)) == expected
    payload = callback["payload"]
    if payload:  # polling reads the same answer from the result GET: status, detail, type
        status = int(callback["error"].rsplit(" ", 1)[-1])
        polled = request_failure(status, payload["detail"], payload.get("error_type"))
        assert (polled.code, str(polled)) == expected


# ---- 12: a result that keeps answering 5xx ends with provider_error, not at the deadline ---


def test_a_result_that_keeps_failing_ends_the_job_after_its_retry_budget(
    stack: Stack, account: conftest.TestAccount, runtime: Runtime, fake_fal: FakeFalServer
) -> None:
    accepted = generate(
        stack.client,
        account,
        tagged("No result [sim latency=1] [fal result=503 webhook=none]"),
        model=UNRENDERED,
    )
    job = wait_for_job(stack.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "provider_error"
    assert job["error"]["message"] == (
        "The provider finished the request but its result could not be fetched "
        "(fal answered 503: Service unavailable)."
    )
    held = round(job["estimated_credits"] * 100)
    assert job_entries(runtime, job["id"]) == {"hold": [held], "release": [held]}
    stats = fal_stats(fake_fal, job["provider_request_id"])
    assert stats["result_calls"] >= 2  # retried, then given up
    # Rendered in 1 s, then RESULT_RETRY_SECONDS of retries: far from the 600 s deadline.
    took = _at(job, "completed_at") - _at(job, "created_at")
    assert RESULT_RETRY_SECONDS <= took < RESULT_RETRY_SECONDS + 10


# ---- 13: one mapping from fal's outcome to our error, by webhook and by polling ------------


@pytest.mark.parametrize(
    ("directive", "error"),
    [
        (
            "[fal error='must describe a scene' error_status=422 error_field=prompt]",
            {
                "code": "invalid_input",
                "message": "The model refused the input: prompt: must describe a scene",
            },
        ),
        ("[fal error='GPU on fire']", {"code": "provider_error", "message": "GPU on fire"}),
    ],
)
def test_a_failure_reads_the_same_by_webhook_and_by_polling(
    stack: Stack,
    account: conftest.TestAccount,
    runtime: Runtime,
    fake_fal: FakeFalServer,
    directive: str,
    error: dict[str, str],
) -> None:
    prompt = tagged(f"Refused [sim latency=1] {directive}")
    hooked = generate(stack.client, account, prompt, model=UNRENDERED)
    polled = generate(stack.client, account, f"{prompt} [fal webhook=none]", model=UNRENDERED)
    by_webhook = wait_for_job(stack.client, account, hooked["job_id"], timeout=30)
    by_polling = wait_for_job(stack.client, account, polled["job_id"], timeout=30)
    assert by_webhook["error"] == by_polling["error"] == error
    assert fal_stats(fake_fal, by_webhook["provider_request_id"])["status_calls"] == 0
    assert fal_stats(fake_fal, by_polling["provider_request_id"])["webhook_attempts"] == 0
    for job in (by_webhook, by_polling):
        held = round(job["estimated_credits"] * 100)
        assert job_entries(runtime, job["id"]) == {"hold": [held], "release": [held]}


# ---- 14: a callback that comes before the worker recorded the request id is kept ---------


def test_a_callback_before_the_submit_answer_is_kept_and_applied(
    stack: Stack, account: conftest.TestAccount, runtime: Runtime, fake_fal: FakeFalServer
) -> None:
    # fal holds the submit answer 3 s; the render takes 1 s, and its callback comes first.
    accepted = generate(stack.client, account, tagged("Early [sim latency=1] [fal submit_delay=3]"))
    job = wait_for_job(stack.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed", job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}
    request_id = job["provider_request_id"]
    stats = fal_stats(fake_fal, request_id)
    # Accepted on its first attempt, before the id was known, and applied when it was:
    # the job was never polled (the first safety poll would have waited far longer).
    assert (stats["webhook_attempts"], stats["webhook_deliveries"]) == (1, 1)
    assert stats["status_calls"] == 0
    assert _at(job, "completed_at") - _at(job, "started_at") < 3
    with runtime.db.transaction() as session:
        kept = session.scalar(select(EarlyCallback).where(EarlyCallback.request_id == request_id))
    assert kept is None  # applied once, and gone


# ---- 15: forged callbacks: JWKS fetches throttled and time-bound; rate limited per source --


def test_forged_callbacks_with_a_stalling_jwks_host_cost_little_and_fetch_once(
    make_app: Callable[..., Flask], stack: Stack, fake_fal: FakeFalServer
) -> None:
    # A fresh API: its JWKS cache is empty, as after a deploy.
    app = make_app(**stack.env, RATE_LIMIT_STORAGE_URL="memory://")
    forger = WebhookSigner.generate()
    body = json.dumps({"request_id": "forged", "status": "OK", "payload": None}).encode()
    fetches = httpx.get(f"{fake_fal.base_url}/_fake/stats").json()["jwks_fetches"]
    httpx.post(f"{fake_fal.base_url}/_fake/jwks-stall", json={"seconds": 8})
    try:
        with serving(app) as url:
            answers: list[tuple[int, float]] = []

            def forge() -> None:
                started = time.monotonic()
                status = _signed_post(url, "forged", body, forger).status_code
                answers.append((status, time.monotonic() - started))

            threads = [threading.Thread(target=forge) for _ in range(2)]
            for thread in threads:
                thread.start()
            started = time.monotonic()
            health = httpx.get(f"{url}/healthz", timeout=10)
            health_took = time.monotonic() - started
            for thread in threads:
                thread.join()
            # The JWKS fetch is throttled even with no key cached, and not waited for.
            for _ in range(5):
                forge()
    finally:
        httpx.post(f"{fake_fal.base_url}/_fake/jwks-stall", json={"seconds": 0})
    assert health.status_code == 200 and health_took < 1
    assert [status for status, _ in answers] == [401] * 7
    assert max(took for _, took in answers[:2]) < 3  # the fetch's deadline, not the stall
    assert max(took for _, took in answers[2:]) < 0.5  # no fetch to wait for
    after = httpx.get(f"{fake_fal.base_url}/_fake/stats").json()["jwks_fetches"]
    assert after - fetches == 1


def test_the_callback_route_is_rate_limited_per_source(
    make_app: Callable[..., Flask], stack: Stack, account: conftest.TestAccount
) -> None:
    app = make_app(
        **stack.env, RATE_LIMIT_STORAGE_URL="memory://", RATE_LIMIT_WEBHOOKS="5 per minute"
    )
    client = app.test_client()
    body = json.dumps({"request_id": "forged", "status": "OK", "payload": None}).encode()
    headers = WebhookSigner.generate().sign(body, "forged")
    answers = [
        client.post("/v1/webhooks/fal", data=body, headers=headers, content_type="application/json")
        for _ in range(6)
    ]
    assert [answer.status_code for answer in answers] == [401] * 5 + [429]
    assert answers[-1].json["error"]["code"] == "rate_limited"
    assert int(answers[-1].headers["Retry-After"]) > 0
    # The same address's API traffic has its own budget.
    assert client.get("/v1/credits", headers=account.headers).status_code == 200


@pytest.mark.parametrize("fault", ["404", "html"])
def test_a_video_that_cannot_be_downloaded_fails_the_job_and_refunds_it(
    stack: Stack, make_account: Callable[..., conftest.TestAccount], runtime: Runtime, fault: str
) -> None:
    """Item 18: fal delivers a result whose video URL answers 404, or an HTML page. After
    its retries the job ends failed with `ingest_failed`, its capture refunded: a customer
    pays only for a video in its library (it used to end completed, charged, no asset)."""
    account = make_account()
    prompt = tagged(f"Unfetchable [sim latency=0.5] [fal file={fault}]")
    job = wait_for_job(
        stack.client, account, generate(stack.client, account, prompt)["job_id"], timeout=60
    )
    assert (job["status"], job["error"]["code"]) == ("failed", "ingest_failed"), job
    assert job["result"] is None or job["result"].get("media_asset_id") is None
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350], "refund": [350]}
    media = stack.client.get("/v1/media", headers=account.headers).json
    assert media["data"] == []
