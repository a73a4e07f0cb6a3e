"""Every real answer matches the document: a job walked through each public status
(queued, processing, completed, failed, cancelled), its page, the error shape, credits and
media, each checked against the schema that `/openapi.json` gives for that route."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from werkzeug.test import TestResponse

from services.api.contract import document
from shared.jobs.status import PublicStatus
from tests.helpers import generate, wait_for_job


def _check(response: TestResponse, method: str, path: str) -> dict[str, Any]:
    """The answer's JSON, after checking it against the document's schema for its status."""
    served = document()
    operation = served["paths"][path][method]
    assert str(response.status_code) in operation["responses"], response.json
    schema = operation["responses"][str(response.status_code)]["content"]["application/json"][
        "schema"
    ]
    validator = Draft202012Validator({**schema, "components": served["components"]})
    errors = [error.message for error in validator.iter_errors(response.json)]
    assert errors == [], (errors, response.json)
    return dict(response.json)


def _job(client: FlaskClient, account: Any, job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=account.headers)
    return _check(response, "get", "/v1/jobs/{job_id}")


def test_the_served_document_is_the_one_built_from_the_models(client: FlaskClient) -> None:
    assert client.get("/openapi.json").json == document()


def test_a_job_in_every_status_matches_the_document(
    client: FlaskClient, idle_app: Flask, account: Any
) -> None:
    seen: set[str] = set()

    # queued (its message goes to a queue no worker reads), then cancelled at once
    idle = idle_app.test_client()
    response = idle.post(
        "/v1/video/generate",
        json={"model": "fal-ai/kling-video/v3/pro/text-to-video", "input": {"prompt": "Idle"}},
        headers=account.headers,
    )
    accepted = _check(response, "post", "/v1/video/generate")
    seen.add(_job(idle, account, accepted["job_id"])["status"])
    cancelled = idle.delete(f"/v1/jobs/{accepted['job_id']}", headers=account.headers)
    seen.add(_check(cancelled, "delete", "/v1/jobs/{job_id}")["status"])

    # processing, then completed, with the video's URLs
    running = generate(client, account, "A heron in the reeds [sim latency=3]")["job_id"]
    wait_for_job(client, account, running, statuses=("processing",))
    seen.add(_job(client, account, running)["status"])
    wait_for_job(client, account, running)
    completed = _job(client, account, running)
    seen.add(completed["status"])
    assert completed["result"]["video"]["url"] and completed["result"]["media_asset_id"]

    # failed at the provider
    failing = generate(client, account, "A storm [sim latency=0.5 fail='model exploded']")
    wait_for_job(client, account, failing["job_id"])
    failed = _job(client, account, failing["job_id"])
    seen.add(failed["status"])
    assert failed["error"]["code"] == "provider_error"

    assert seen == {status.value for status in PublicStatus}
    page = client.get("/v1/jobs?limit=5", headers=account.headers)
    assert len(_check(page, "get", "/v1/jobs")["data"]) == 3
    credits = client.get("/v1/credits", headers=account.headers)
    assert _check(credits, "get", "/v1/credits")["held"] == 0
    media = client.get("/v1/media", headers=account.headers)
    asset = _check(media, "get", "/v1/media")["data"][0]
    single = client.get(f"/v1/media/{asset['id']}", headers=account.headers)
    assert _check(single, "get", "/v1/media/{asset_id}")["poster_url"]


@pytest.mark.parametrize(
    ("method", "path", "body", "route", "status"),
    [
        ("post", "/v1/video/generate", {"model": "nope", "input": {}}, "/v1/video/generate", 404),
        ("post", "/v1/video/generate", {"input": {}}, "/v1/video/generate", 422),
        ("get", "/v1/jobs?limit=1_0", None, "/v1/jobs", 422),
        ("get", "/v1/jobs/00000000-0000-0000-0000-000000000000", None, "/v1/jobs/{job_id}", 404),
        ("get", "/v1/video/pricing?model=nope", None, "/v1/video/pricing", 404),
    ],
)
def test_errors_match_the_document(
    client: FlaskClient,
    account: Any,
    method: str,
    path: str,
    body: Any,
    route: str,
    status: int,
) -> None:
    response = getattr(client, method)(path, json=body, headers=account.headers)
    assert response.status_code == status
    assert _check(response, method, route)["error"]["code"]


def test_insufficient_credits_matches_the_document(client: FlaskClient, make_account: Any) -> None:
    poor = make_account(credits="1")
    response = client.post(
        "/v1/video/generate",
        json={"model": "fal-ai/kling-video/v3/pro/text-to-video", "input": {"prompt": "x"}},
        headers=poor.headers,
    )
    error = _check(response, "post", "/v1/video/generate")["error"]
    assert error["code"] == "insufficient_credits" and error["available_credits"] == 1.0
