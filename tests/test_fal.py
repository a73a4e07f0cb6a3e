"""The fal path end to end: the real worker calls the fake fal server through the real,
unpatched fal-client (hosts from FAL_QUEUE_RUN_HOST/FAL_RUN_HOST, trust from
SSL_CERT_FILE), once polling only and once with signed webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete

from shared.catalog import sync as catalog_sync
from shared.catalog.models import ModelPrice
from shared.config import Settings, load_settings
from shared.db import utcnow
from shared.media.probe import probe_video
from shared.runtime import Runtime
from tests.fake_fal import FakeFalServer, WebhookSigner
from tests.helpers import (
    KLING_I2V,
    balance,
    fal_stats,
    generate,
    job_entries,
    tagged,
    wait_for_job,
)
from tests.stack import fal_env, free_port, running_worker, serving
from tests.test_pipeline import _png_data_url
from tests.waiting import wait_for

WAN = "fal-ai/wan/v2.7/text-to-video"

# A model the other tests do not render: with fewer than three delivered renders to go
# by, its polls are paced by POLL_MAX_SECONDS (the catalog's 45 s is only a guess), so a
# test sees the provider's queue and running phases instead of only the end.
UNMEASURED_MODEL = "fal-ai/kling-video/v3/standard/text-to-video"


@dataclass
class FalStack:
    app: Flask
    client: FlaskClient
    env: dict[str, str]


def _fal_env(fake: FakeFalServer, queue: str, **extra: str) -> dict[str, str]:
    return {
        **fal_env(fake),
        "FAL_START_TIMEOUT_SECONDS": "3",
        "CELERY_QUEUE": queue,
        **extra,
    }


@pytest.fixture(scope="module")
def polling(
    fake_fal: FakeFalServer,
    make_app: Callable[..., Flask],
    test_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FalStack]:
    """API and worker on fal, polling only."""
    env = _fal_env(fake_fal, f"{test_env['CELERY_QUEUE']}-fal-polling")
    log = tmp_path_factory.mktemp("fal-worker") / "worker.log"
    with running_worker({**test_env, **env}, log):
        app = make_app(**env)
        yield FalStack(app, app.test_client(), env)


@pytest.fixture(scope="module")
def webhooks(
    fake_fal: FakeFalServer,
    make_app: Callable[..., Flask],
    test_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[FalStack]:
    """API and worker on fal with webhooks: the fake calls our API over real HTTP."""
    port = free_port()
    env = _fal_env(
        fake_fal, "fal-webhooks", FAL_WEBHOOK_URL=f"http://127.0.0.1:{port}/v1/webhooks/fal"
    )
    log = tmp_path_factory.mktemp("fal-webhook-worker") / "worker.log"
    with running_worker({**test_env, **env}, log):
        app = make_app(**env)
        with serving(app, port):
            yield FalStack(app, app.test_client(), env)


# ---- the happy path --------------------------------------------------------------------


def test_fal_job_completes_settles_and_ingests_like_the_simulator(
    polling, account, runtime, fake_fal, tmp_path
):
    accepted = generate(polling.client, account, tagged("A fox [sim latency=1]"), duration=5)
    job = wait_for_job(polling.client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    assert job["credits_used"] == 3.5
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}
    assert job["result"]["video"]["provider_url"].startswith(fake_fal.base_url)

    stats = fal_stats(fake_fal, job["provider_request_id"])
    assert stats["endpoint"] == "fal-ai/kling-video/v3/pro/text-to-video"
    assert stats["arguments"]["duration"] == "5"  # sent as the model's string
    assert stats["start_timeout"] == 3

    path = "/" + job["result"]["video"]["url"].split("/", 3)[3]
    with polling.client.get(path) as response:
        (tmp_path / "fal.mp4").write_bytes(response.data)
    info = probe_video(tmp_path / "fal.mp4")
    assert (info.codec, info.width, info.height) == ("h264", 640, 360)
    assert abs(info.duration_seconds - 5) < 0.1


def test_billing_units_from_fal_are_shown_on_the_job_and_summed_in_the_usage_export(
    polling, account, runtime
):
    """fal's x-fal-billable-units, as the fake sends it with each result (the seconds of
    output, a value of its own, or none), on the job priced at the model's $0.07 per unit,
    and in GET /v1/usage (JSON and CSV), whose totals are the ledger's."""
    start = utcnow() - timedelta(hours=1)
    prompts = {
        5.0: "A fox [sim latency=1]",
        7.25: "A fox [sim latency=1] [fal units=7.25]",
        None: "A fox [sim latency=1] [fal units=none]",
    }
    made = {
        units: generate(polling.client, account, tagged(prompt), duration=5)["job_id"]
        for units, prompt in prompts.items()
    }
    billing = {
        units: wait_for_job(polling.client, account, job_id)["billing"]
        for units, job_id in made.items()
    }
    assert billing == {
        units: {
            "estimated_credits": 3.5,
            "charged_credits": 3.5,
            "provider_units": units,
            "provider_cost_usd": cost,
        }
        for units, cost in ((5.0, 0.35), (7.25, 0.5075), (None, None))
    }

    end = utcnow() + timedelta(hours=1)
    charged = balance(runtime, account)  # captures minus refunds: every entry is this hour's
    query = {"from": start.isoformat(), "to": end.isoformat(), "group_by": "model"}
    usage = polling.client.get("/v1/usage", query_string=query, headers=account.headers).json
    assert usage["rows"][0]["group"] == "fal-ai/kling-video/v3/pro/text-to-video"
    assert usage["totals"] == {
        "charged_credits": 10.5,
        "jobs": 3,
        "provider_units": 12.25,
        "provider_cost_usd": 0.8575,
        "jobs_without_units": 1,
    }
    assert round(usage["totals"]["charged_credits"] * 100) == 10_000 - charged.balance
    exported = polling.client.get(
        "/v1/usage", query_string={**query, "format": "csv"}, headers=account.headers
    ).get_data(as_text=True)
    assert exported.splitlines()[-1] == "total,10.5,3,12.25,0.8575,1"


def test_image_url_is_sent_as_the_models_start_image_url(polling, account, fake_fal):
    accepted = generate(
        polling.client,
        account,
        tagged("Zoom [sim latency=1]"),
        model=KLING_I2V,
        image_url=_png_data_url((10, 200, 10), (640, 360)),
    )
    job = wait_for_job(polling.client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    arguments = fal_stats(fake_fal, job["provider_request_id"])["arguments"]
    assert "start_image_url" in arguments and "image_url" not in arguments


def test_progress_queue_position_and_logs_are_stored_on_the_job(polling, account):
    accepted = generate(
        polling.client,
        account,
        tagged(
            "Slow queue [sim latency=14] [fal queue=6]"
        ),  # 2.8 s queued: the start timeout is 3 s
        model=UNMEASURED_MODEL,
    )
    positions: list[int] = []

    def watch() -> bool:
        job = polling.client.get(f"/v1/jobs/{accepted['job_id']}", headers=account.headers).json
        if job["queue_position"] is not None:
            positions.append(job["queue_position"])
        return job["progress"] > 0 and bool(job["logs"])

    wait_for(watch, timeout=30)
    assert len(set(positions)) >= 2 and positions == sorted(positions, reverse=True)
    assert wait_for_job(polling.client, account, accepted["job_id"])["status"] == "completed"


# ---- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("directive", "status", "code"),
    [
        ("[fal submit=422]", "failed", "invalid_input"),
        ("[fal submit=401]", "failed", "provider_error"),
        ("[fal submit=503]", "failed", "provider_error"),  # retried with backoff, then given up
        ("[fal error='GPU on fire']", "failed", "provider_error"),
        ("[sim latency=20]", "failed", "provider_timeout"),  # queued past the start deadline
    ],
)
def test_provider_faults_fail_the_job_and_release_the_hold(
    polling, account, runtime, directive, status, code
):
    accepted = generate(polling.client, account, tagged(f"Faulty {directive}"))
    job = wait_for_job(polling.client, account, accepted["job_id"], timeout=60)
    assert (job["status"], job["error"]["code"]) == (status, code), job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "release": [350]}
    assert balance(runtime, account).available == 10000


def test_a_422_names_the_bad_field(polling, account):
    accepted = generate(polling.client, account, tagged("Bad [fal submit=422]"))
    job = wait_for_job(polling.client, account, accepted["job_id"])
    assert "prompt" in job["error"]["message"]


def test_a_completion_with_error_carries_the_providers_message(polling, account):
    accepted = generate(polling.client, account, tagged("Boom [fal error='GPU on fire']"))
    job = wait_for_job(polling.client, account, accepted["job_id"])
    assert job["error"]["message"] == "GPU on fire"


@pytest.mark.parametrize(
    "directive",
    [
        "[fal submit=429x3]",  # fal-client retries 429 itself
        "[fal submit=502-ingressx2]",  # and ingress pages without x-fal-request-id
        "[fal submit=503x2]",  # we retry 5xx with backoff
        "[fal status=503x3]",
        "[fal status=429x2]",
        "[fal result=500x2]",
    ],
)
def test_transient_faults_are_retried_until_the_job_completes(polling, account, runtime, directive):
    accepted = generate(polling.client, account, tagged(f"Flaky [sim latency=1] {directive}"))
    job = wait_for_job(polling.client, account, accepted["job_id"], timeout=60)
    assert job["status"] == "completed", job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}


def test_a_stalled_request_fails_at_the_deadline_and_is_cancelled_at_fal(
    fake_fal, make_app, polling, account, runtime
):
    client = make_app(**polling.env, JOB_DEADLINE_SECONDS="4").test_client()
    accepted = generate(client, account, tagged("Stuck [sim stall latency=1]"))
    job = wait_for_job(client, account, accepted["job_id"], timeout=30)
    assert (job["status"], job["error"]["code"]) == ("failed", "timeout")
    assert job_entries(runtime, job["id"]) == {"hold": [350], "release": [350]}
    wait_for(
        lambda: fal_stats(fake_fal, job["provider_request_id"])["cancel_calls"] >= 1, timeout=30
    )


def _wait_at_provider(
    client: FlaskClient, account: Any, job_id: str, ready: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = client.get(f"/v1/jobs/{job_id}", headers=account.headers).json
        return job if job["provider_request_id"] and ready(job) else None

    return wait_for(check, timeout=30)


def test_cancel_of_a_request_queued_at_fal(polling, account, runtime):
    accepted = generate(
        polling.client, account, tagged("Queued [sim latency=12]"), model=UNMEASURED_MODEL
    )
    _wait_at_provider(
        polling.client, account, accepted["job_id"], lambda job: job["queue_position"] is not None
    )
    response = polling.client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert response.status_code == 202
    job = wait_for_job(polling.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "cancelled"
    held = round(job["estimated_credits"] * 100)
    assert job_entries(runtime, job["id"]) == {"hold": [held], "release": [held]}


def test_cancel_of_a_running_request(polling, account, runtime):
    accepted = generate(
        polling.client, account, tagged("Running [sim latency=8]"), model=UNMEASURED_MODEL
    )
    _wait_at_provider(polling.client, account, accepted["job_id"], lambda job: job["progress"] > 0)
    polling.client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    job = wait_for_job(polling.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "cancelled"
    assert job["credits_used"] is None
    held = round(job["estimated_credits"] * 100)
    assert job_entries(runtime, job["id"]) == {"hold": [held], "release": [held]}


def test_a_request_that_completes_after_cancel_is_settled_on_what_happened(
    polling, account, runtime
):
    # The unmeasured model: its polls come every few seconds while it renders. The measured
    # one's first poll waits for its recent renders' time, which other tests' renders can
    # make as long as this one: the first sign of it running was its end (a 409).
    accepted = generate(
        polling.client,
        account,
        tagged("Stubborn [sim latency=8] [fal cancel=ignore]"),
        model=UNMEASURED_MODEL,
    )
    _wait_at_provider(polling.client, account, accepted["job_id"], lambda job: job["progress"] > 0)
    response = polling.client.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    assert response.status_code == 202
    job = wait_for_job(polling.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed"  # fal delivered, and bills for it
    assert job["cancel_requested_at"] is not None
    held = round(job["estimated_credits"] * 100)
    assert job["credits_used"] == job["estimated_credits"]
    assert job_entries(runtime, job["id"]) == {"hold": [held], "capture": [held]}


# ---- webhooks ----------------------------------------------------------------------------


def test_a_webhook_completes_the_job_without_polling(webhooks, account, runtime, fake_fal):
    accepted = generate(webhooks.client, account, tagged("Hooked [sim latency=1]"))
    job = wait_for_job(webhooks.client, account, accepted["job_id"])
    assert job["status"] == "completed", job
    stats = fal_stats(fake_fal, job["provider_request_id"])
    assert stats["webhook_deliveries"] >= 1
    assert stats["status_calls"] == 0  # the first poll was not even due
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}


def test_polling_still_completes_a_job_whose_webhook_never_comes(webhooks, account):
    accepted = generate(
        webhooks.client, account, tagged("Lost hook [sim latency=1] [fal webhook=none]")
    )
    job = wait_for_job(webhooks.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed"


def test_a_failure_webhook_fails_the_job_and_releases(webhooks, account, runtime):
    accepted = generate(
        webhooks.client, account, tagged("Hook fail [sim latency=1] [fal error='no']")
    )
    job = wait_for_job(webhooks.client, account, accepted["job_id"])
    assert (job["status"], job["error"]["message"]) == ("failed", "no")
    assert job_entries(runtime, job["id"]) == {"hold": [350], "release": [350]}


def _callback(request_id: str, status: str = "OK", **extra: Any) -> bytes:
    payload = {"video": {"url": "https://example.invalid/x.mp4", "content_type": "video/mp4"}}
    return json.dumps(
        {
            "request_id": request_id,
            "gateway_request_id": request_id,
            "status": status,
            "payload": payload,
            **extra,
        }
    ).encode()


def _post(client: FlaskClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post(
        "/v1/webhooks/fal", data=body, headers=headers, content_type="application/json"
    )


def test_forged_and_stale_webhooks_are_refused(webhooks, fake_fal, account):
    accepted = generate(webhooks.client, account, tagged("Guarded [sim latency=1]"))
    job = wait_for_job(webhooks.client, account, accepted["job_id"])
    request_id = job["provider_request_id"]
    body = _callback(request_id)

    forged = WebhookSigner.generate().sign(body, request_id)
    assert _post(webhooks.client, body, forged).status_code == 401
    stale = fake_fal.signer.sign(body, request_id, timestamp=int(time.time()) - 600)
    assert _post(webhooks.client, body, stale).status_code == 401
    tampered = fake_fal.signer.sign(body, request_id)
    assert _post(webhooks.client, body.replace(b"OK", b"ERROR"), tampered).status_code == 401
    unsigned = _post(webhooks.client, body, {})
    assert unsigned.status_code == 401
    assert unsigned.json["error"]["code"] == "invalid_signature"


def test_replayed_and_out_of_order_webhooks_change_nothing(webhooks, fake_fal, account, runtime):
    accepted = generate(
        webhooks.client, account, tagged("Twice [sim latency=1] [fal webhook=twice]")
    )
    job = wait_for_job(webhooks.client, account, accepted["job_id"])
    request_id = job["provider_request_id"]
    wait_for(lambda: fal_stats(fake_fal, request_id)["webhook_deliveries"] >= 2, timeout=30)

    late_error = _callback(request_id, status="ERROR", error="late failure")
    answer = _post(webhooks.client, late_error, fake_fal.signer.sign(late_error, request_id))
    assert (answer.status_code, answer.json["status"]) == (200, "ignored")
    again = _callback(request_id)
    replay = _post(webhooks.client, again, fake_fal.signer.sign(again, request_id))
    assert replay.json["status"] == "ignored"

    assert wait_for_job(webhooks.client, account, job["id"]) == job
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}


def test_a_new_signing_key_is_picked_up_from_the_jwks(webhooks, fake_fal, account):
    generate(webhooks.client, account, tagged("Warm up [sim latency=1]"))
    httpx.post(f"{fake_fal.base_url}/_fake/rotate-key")
    accepted = generate(webhooks.client, account, tagged("Rotated [sim latency=1]"))
    job = wait_for_job(webhooks.client, account, accepted["job_id"], timeout=30)
    assert job["status"] == "completed"
    # Signed with a key our cached JWKS lacks: accepted once the JWKS is fetched again.
    wait_for(
        lambda: fal_stats(fake_fal, job["provider_request_id"])["webhook_deliveries"] >= 1,
        timeout=30,
    )


# ---- catalog and prices ------------------------------------------------------------------


@pytest.fixture
def fal_settings(fake_fal: FakeFalServer, test_env: dict[str, str]) -> Settings:
    return load_settings(
        {**test_env, **_fal_env(fake_fal, f"{test_env['CELERY_QUEUE']}-fal-polling")}
    )


@pytest.fixture
def fresh_catalog(runtime: Runtime) -> Iterator[None]:
    with runtime.db.transaction() as session:
        session.execute(delete(ModelPrice))
    yield
    with runtime.db.transaction() as session:
        session.execute(delete(ModelPrice))


def test_catalog_and_prices_come_from_the_platform_api(
    fresh_catalog, fal_settings, runtime, polling, account
):
    with runtime.db.transaction() as session:
        assert catalog_sync.refresh(session=session, settings=fal_settings) == 8
    models = polling.client.get("/v1/video/models", headers=account.headers).json
    assert models["source"] == "fal"
    wan = next(model for model in models["data"] if model["id"] == WAN)
    assert wan["pricing"]["unit_price_usd"] == 0.08
    price = polling.client.get(
        f"/v1/video/pricing?model={WAN}&duration=5", headers=account.headers
    ).json
    assert price["estimated_credits"] == 4.0  # 0.08 × 5 × 5 / 0.50
    kling = polling.client.get(
        "/v1/video/pricing?model=fal-ai/kling-video/v3/pro/text-to-video&duration=5",
        headers=account.headers,
    ).json
    assert kling["estimated_credits"] == 3.5
    submitted = generate(polling.client, account, tagged("Priced live"), model=WAN)
    assert submitted["estimated_credits"] == 4.0


def test_catalog_falls_back_to_the_builtin_when_the_platform_is_unreachable(
    fresh_catalog, fal_settings, fake_fal, runtime, polling, account
):
    down = f"{fake_fal.base_url}/_fake/platform-down"
    httpx.post(down, json={"seconds": 60})
    try:
        with pytest.raises(catalog_sync.CatalogUnavailable), runtime.db.transaction() as session:
            catalog_sync.refresh(session=session, settings=fal_settings)
    finally:
        httpx.post(down, json={"seconds": 0})
    models = polling.client.get("/v1/video/models", headers=account.headers).json
    assert models["source"] == "builtin"
    wan = next(model for model in models["data"] if model["id"] == WAN)
    assert wan["pricing"]["unit_price_usd"] == 0.10


def test_a_stale_listing_gives_way_to_the_builtin_catalog(fresh_catalog, fal_settings, runtime):
    with runtime.db.transaction() as session:
        catalog_sync.refresh(session=session, settings=fal_settings)
    later = utcnow() + timedelta(seconds=fal_settings.catalog_ttl_seconds + 1)
    with runtime.db.transaction() as session:
        assert catalog_sync.load_catalog(session=session, settings=fal_settings).source == "fal"
        stale = catalog_sync.load_catalog(session=session, settings=fal_settings, now=later)
    assert stale.source == "builtin"
