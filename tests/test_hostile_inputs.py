"""Input the worker could never process is refused at submit, naming the field; and what
slips through anyway (a bug, a damaged file) ends the job at once, its credits released,
instead of leaving it "processing" with its hold until the deadline.

Against the real stack: PostgreSQL, Redis and a real Celery worker (the session's)."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from PIL import Image
from sqlalchemy import func, select

from shared.config import Settings
from shared.jobs.models import Job
from shared.runtime import Runtime
from tests.helpers import balance, generate, job_entries, wait_for_job
from tests.waiting import wait_for

T2V = "fal-ai/kling-video/v3/pro/text-to-video"
I2V = "fal-ai/kling-video/v3/pro/image-to-video"


def _jobs_of(runtime: Runtime, account: Any) -> int:
    with runtime.db.transaction() as session:
        return session.scalar(select(func.count()).where(Job.account_id == account.id)) or 0


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (f'{{"model":"{T2V}","input":{{"prompt":"a beach \\ud800"}}}}', "input.prompt"),
        (
            f'{{"model":"{T2V}","input":{{"prompt":"a beach"}},"metadata":{{"tag":"\\udfff"}}}}',
            "metadata.tag",
        ),
        (
            f'{{"model":"{T2V}","input":{{"prompt":"a beach"}},"metadata":{{"\\ud83d":1}}}}',
            "metadata",
        ),
    ],
)
def test_a_lone_surrogate_is_refused_at_submit_naming_its_field(
    client: Any, account: Any, runtime: Runtime, raw: str, field: str
) -> None:
    """Valid JSON, but not Unicode text: no UTF-8 encoding exists, so no render can use it."""
    response = client.post(
        "/v1/video/generate", data=raw, content_type="application/json", headers=account.headers
    )
    assert response.status_code == 422, response.json
    assert response.json["error"]["code"] == "invalid_input"
    assert field in response.json["error"]["fields"]
    assert _jobs_of(runtime, account) == 0


@pytest.mark.parametrize(
    "url",
    [
        f"https://{'a' * 64}.example.com/cat.png",  # a label DNS cannot carry
        f"https://{'abcdefgh.' * 32}com/cat.png",  # 256 characters in all
        "https://cats..example.com/cat.png",  # an empty label
        "https://exa mple.com/cat.png",  # a space: no resolver looks it up
    ],
)
def test_an_image_url_whose_host_dns_cannot_carry_is_refused_at_submit(
    client: Any, account: Any, runtime: Runtime, url: str
) -> None:
    body = {"model": I2V, "input": {"image_url": url, "prompt": "a cat"}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422, response.json
    assert "input.image_url" in response.json["error"]["fields"]
    assert _jobs_of(runtime, account) == 0


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("data:image/png;base64,AAAA", "is a data: URL that holds no JPEG, PNG, WebP or GIF image"),
        ("data:image/png;base64,iVBOR", "is a data: URL whose base64 is not valid"),
        ("data:image/png;base64", "is a data: URL without its ',' and data"),
        ("data:image/gif,hello", "is a data: URL that holds no JPEG, PNG, WebP or GIF image"),
    ],
)
def test_a_data_url_without_an_image_is_refused_at_submit(
    client: Any, account: Any, runtime: Runtime, url: str, problem: str
) -> None:
    """It was accepted, held, and failed the job seconds later ("could not load
    image_url: URL does not point to a supported image"): its bytes are right there."""
    body = {"model": I2V, "input": {"image_url": url, "prompt": "a cat"}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422, response.json
    assert response.json["error"]["fields"] == {"input.image_url": problem}
    assert _jobs_of(runtime, account) == 0


def test_a_data_url_of_each_image_format_is_accepted(client: Any, account: Any) -> None:
    for image_format in ("PNG", "JPEG", "GIF", "WEBP"):
        buffer = io.BytesIO()
        Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, image_format)
        mime = f"image/{image_format.lower()}"
        url = f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode()}"
        body = {"model": I2V, "input": {"image_url": url, "prompt": f"a {image_format}"}}
        response = client.post("/v1/video/generate", json=body, headers=account.headers)
        assert response.status_code == 202, (image_format, response.json)


@pytest.mark.parametrize("port", ["99999", "0", "65536", "http"])
def test_a_url_whose_port_no_connection_can_use_is_refused_at_submit(
    client: Any, account: Any, runtime: Runtime, port: str
) -> None:
    """Accepted, the job failed later with "its host name does not resolve", about a host
    that resolves; the port is named at submit instead, for an image and for a webhook."""
    url = f"https://example.com:{port}/cat.png"
    body = {"model": I2V, "input": {"image_url": url, "prompt": "a cat"}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422, response.json
    assert response.json["error"]["fields"] == {
        "input.image_url": "has a port that is not one of 1 to 65535"
    }
    assert _jobs_of(runtime, account) == 0
    hook = {"url": url, "events": ["job.completed"]}
    response = client.post("/v1/webhooks", json=hook, headers=account.headers)
    assert response.status_code == 422, response.json
    assert response.json["error"]["fields"] == {"url": "has a port that is not one of 1 to 65535"}


def test_an_unexpected_error_in_a_task_ends_the_job_at_once_and_releases_its_hold(
    make_app: Callable[..., Flask],
    make_account: Callable[..., Any],
    runtime: Runtime,
    settings: Settings,
) -> None:
    """The provider's record of the request is damaged (a truncated file on a full disk):
    reading it raises an error no step expects. The job fails with `internal_error` within
    seconds, not at its 10-minute deadline, and the account gets its credits back."""
    client = make_app(JOB_DEADLINE_SECONDS="600").test_client()
    account = make_account("100")
    before = balance(runtime, account)
    job_id = generate(client, account, "Damaged [sim latency=6]")["job_id"]
    request_id = wait_for(
        lambda: _provider_request_id(runtime, job_id), timeout=30, message="never submitted"
    )
    record: Path = settings.simulator_root / "requests" / f"{request_id}.json"
    intact = record.read_text()
    record.write_text(intact[:10])
    try:
        job = wait_for_job(client, account, job_id, timeout=20)
    finally:
        record.write_text(intact)  # the simulator's folder is the session's: leave it whole

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "internal_error"
    assert "JSONDecodeError" in job["error"]["message"]
    assert balance(runtime, account) == before  # nothing charged, nothing still held
    entries = job_entries(runtime, job_id)
    assert entries["release"] == entries["hold"]
    assert "capture" not in entries


def _provider_request_id(runtime: Runtime, job_id: str) -> str | None:
    with runtime.db.transaction() as session:
        return session.scalar(select(Job.provider_request_id).where(Job.id == job_id))


def test_the_surrogate_check_names_nested_fields_in_lists() -> None:
    """The path a client is told points at the very string, inside lists too."""
    from services.api.params import _unstorable

    body = json.loads('{"input": {"frames": ["ok", {"caption": "\\ud800"}]}}')
    assert _unstorable(body, "") == (
        "input.frames[1].caption",
        "contains a lone UTF-16 surrogate (not valid Unicode text)",
    )
