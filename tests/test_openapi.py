"""GET /openapi.json: valid OpenAPI, complete (every route the app registers), and true of
the real API over HTTP, as schemathesis finds by generating requests from it.

Generated submissions create real jobs, so the requests go to an idle app (its messages
reach no worker): the run renders no videos. Its jobs stay queued, so their event streams
(the stateful phase follows a submit to them) end after a second, not after five minutes.
schemathesis loads the document at import (one test per operation: its fixture-based
loader breaks on this pytest), and the first test checks that the API serves exactly that
document.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import hypothesis
import pytest
import requests
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.api.contract import document
from tests import conftest
from tests.helpers import KLING_T2V
from tests.stack import serving
from tests.waiting import wait_for

schema = schemathesis.openapi.from_dict(document())
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
STATEFUL_EXAMPLES = 25
# fal signs its callbacks with its own key: generated ones are refused (a documented 401).
UNSIGNED = "/v1/webhooks/fal"


@pytest.fixture(scope="module")
def idle_api(make_app: Callable[..., Flask]) -> Iterator[str]:
    idle = make_app(CELERY_QUEUE=f"{conftest.RUN_QUEUE}-idle", EVENT_STREAM_MAX_SECONDS="1")
    with serving(idle) as url:
        yield url


@pytest.fixture
def rich_account(make_account: Callable[..., conftest.TestAccount]) -> conftest.TestAccount:
    """Enough credits that valid submissions are accepted rather than refused with 402."""
    return make_account(credits="1000000")


def flask_path(rule: str) -> str:
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_document_is_valid_openapi(live_api: str) -> None:
    response = requests.get(live_api + "/openapi.json", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == document()
    schema.validate()  # against the OpenAPI 3.1 meta-schema


def test_document_describes_every_route_and_method(app: Flask, live_api: str) -> None:
    registered = {
        (flask_path(rule.rule), method.lower()): rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    paths = requests.get(live_api + "/openapi.json", timeout=10).json()["paths"]
    documented = {
        (path, method): operation["operationId"]
        for path, item in paths.items()
        for method, operation in item.items()
    }
    assert documented == registered


@schema.parametrize()
@hypothesis.settings(
    max_examples=30,
    deadline=None,
    database=None,  # no .hypothesis/ directory in the repository
    # One fresh account per operation, shared by its examples on purpose.
    suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture],
)
def test_api_conforms_to_document(
    case: Case, idle_api: str, rich_account: conftest.TestAccount
) -> None:
    response = case.call_and_validate(
        base_url=idle_api, headers=rich_account.headers, checks=CHECKS, timeout=30
    )
    # schemathesis also probes without credentials; the key it was given must authenticate.
    sent_key = (
        response.request.headers.get("Authorization") == rich_account.headers["Authorization"]
    )
    if sent_key and case.operation.path != UNSIGNED:
        assert response.status_code != 401


def test_real_objects_conform_to_document(
    live_api: str, make_account: Callable[..., conftest.TestAccount]
) -> None:
    """What fuzzing cannot reach: a job the worker renders, its media and their bytes, an
    idempotent replay (and one with `Prefer: wait`) and a conflict, a cancel that comes too
    late, a 402."""
    account = make_account()

    def call(
        path: str, method: str = "GET", *, auth: dict[str, str] = account.headers, **parts: Any
    ) -> Response:
        case = schema[path][method].Case(**parts)
        return case.call_and_validate(base_url=live_api, headers=auth, checks=CHECKS)

    def finished() -> dict[str, Any] | None:
        job = call("/v1/jobs/{job_id}", path_parameters={"job_id": job_id}).json()
        return job if job["status"] in ("completed", "failed") else None

    body = {"model": KLING_T2V, "input": {"prompt": "a lighthouse at dusk", "duration": "3"}}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    job_id = call("/v1/video/generate", "POST", body=body, headers=key).json()["job_id"]
    replay = call("/v1/video/generate", "POST", body=body, headers=key)
    assert replay.headers["idempotent-replayed"] == ["true"]
    other_body = {**body, "metadata": {"retry": 1}}
    assert call("/v1/video/generate", "POST", body=other_body, headers=key).status_code == 409

    job = wait_for(finished, timeout=60)
    assert job["status"] == "completed", job
    waited = {**key, "Prefer": "wait=5"}  # a replay of an ended job: 200 with the job
    assert call("/v1/video/generate", "POST", body=body, headers=waited).status_code == 200
    job_path = {"job_id": job_id}
    call("/v1/video/{job_id}", path_parameters=job_path)
    assert call("/v1/jobs/{job_id}", "DELETE", path_parameters=job_path).status_code == 409
    assert call("/v1/jobs", query={"status": "completed"}).json()["data"][0]["id"] == job_id

    asset = {"asset_id": job["result"]["media_asset_id"]}
    assert call("/v1/media", query={"search": "lighthouse"}).json()["total"] == 1
    call("/v1/media/{asset_id}", path_parameters=asset)
    content = "/v1/media/{asset_id}/content"
    call(content, path_parameters=asset)
    for byte_range, status in (("bytes=0-99", 206), ("bytes=999999999-", 416)):
        ranged = call(content, path_parameters=asset, headers={"Range": byte_range})
        assert ranged.status_code == status
    token = parse_qs(urlparse(job["result"]["video"]["url"]).query)["token"][0]
    call(content, path_parameters=asset, query={"token": token}, auth={})
    call("/v1/media/{asset_id}/poster", path_parameters=asset)
    call("/v1/credits")

    poor = make_account(credits="0")
    assert call("/v1/video/generate", "POST", body=body, auth=poor.headers).status_code == 402


def test_stateful_workflows_conform_to_document(
    idle_api: str, rich_account: conftest.TestAccount
) -> None:
    """schemathesis's stateful phase: sequences that follow the document's links (submit,
    then read or cancel the job it made), every answer checked like the single calls."""
    headers = rich_account.headers

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": idle_api, "headers": headers, "timeout": 30}

        def validate_response(
            self, response: Response, case: Case, additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs)

    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=4,
            deadline=None,
            suppress_health_check=list(hypothesis.HealthCheck),
        )
    )
