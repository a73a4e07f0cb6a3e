"""Hostile clients against the real API: gunicorn with the Procfile's command line (gevent
workers, one of them here), over HTTP, with a real worker rendering behind it (issue 11,
items 1, 3, 5 and 6).

Slow senders, requests gunicorn refuses itself, bodies nested to exhaust recursion, signed
media URLs and the access log, cache headers, forged Host headers, invented methods and
the metrics port. `PUBLIC_BASE_URL` is unset, as in the embedded default.
"""

from __future__ import annotations

import json
import random
import socket
import string
import time
from collections.abc import Iterator
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.api.http_metrics import METHODS
from shared import accounts
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import KLING_T2V, HttpApi, generate, wait_for_job
from tests.stack import Api, running_api
from tests.waiting import wait_for

SLOW_CLIENTS = 100
# Answers while the slow clients wait: well under the 30 s a sync worker blocked for.
RESPONSIVE_SECONDS = 2.0


@pytest.fixture(scope="module")
def api_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile") / "api.log"


@pytest.fixture(scope="module")
def api(
    worker: None, test_env: dict[str, str], api_log: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    """One gunicorn worker: whatever one client does must not stall the others."""
    metrics = tmp_path_factory.mktemp("hostile-metrics")
    env = {
        **test_env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        # Failed authentications are counted per address in the Redis every test run
        # shares; this suite sends none and must not inherit another run's.
        "RATE_LIMIT_AUTH_FAILURES": "100000 per minute",
    }
    with running_api(env, api_log, workers=1) as running:
        yield running


@pytest.fixture
def http(api: Api) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=10) as client:
        yield client


def raw_request(api: Api, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library would send these); the status line,
    headers and body of the answer, read until the server closes."""
    port = int(api.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (x.split(":", 1) for x in lines)}
    return int(status_line.split()[1]), headers, body


def error_code(response: httpx.Response) -> str:
    assert response.headers["Content-Type"] == "application/json", response.text
    return response.json()["error"]["code"]


# ---- 1. slow clients -------------------------------------------------------------------


def test_clients_that_send_half_a_body_and_wait_do_not_stall_the_api(api, http, make_account):
    account = make_account()
    body = json.dumps({"model": KLING_T2V, "input": {"prompt": "slow " * 100}}).encode()
    head = (
        f"POST /v1/video/generate HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {account.key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    port = int(api.url.rsplit(":", 1)[1])
    with ExitStack() as stack:
        slow = []
        for _ in range(SLOW_CLIENTS):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=10))
            sock.sendall(head + body[: len(body) // 2])
            slow.append(sock)

        for path, headers in (("/healthz", {}), ("/v1/credits", account.headers)):
            started = time.monotonic()
            response = http.get(path, headers=headers, timeout=RESPONSIVE_SECONDS * 2)
            assert response.status_code == 200, response.text
            assert time.monotonic() - started < RESPONSIVE_SECONDS, path

        # The server was holding them, not dropping them: the rest of a body gets its answer.
        slow[0].sendall(body[len(body) // 2 :])
        status_line = slow[0].recv(65536).split(b"\r\n", 1)[0]
        assert status_line.split()[1] == b"202", status_line


# ---- 1. errors below the app -----------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT AN HTTP REQUEST\r\n\r\n", 400, "bad_request"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "header_fields_too_large",
        ),
    ],
    ids=["bad-request-line", "uri-too-long", "header-too-large"],
)
def test_requests_the_server_refuses_are_answered_in_the_error_shape(
    api, request_bytes, status, code
):
    answered, headers, body = raw_request(api, request_bytes)
    assert answered == status
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == code


# ---- 3. deep JSON ----------------------------------------------------------------------


@pytest.mark.parametrize("depth", [330, 100_000])
def test_deeply_nested_bodies_are_refused_without_a_traceback(
    api, api_log, http, make_account, depth
):
    account = make_account()
    nested = "[" * depth + "]" * depth
    body = (
        f'{{"model": "{KLING_T2V}", "input": {{"prompt": "deep"}}, "metadata": {{"x": {nested}}}}}'
    )
    response = http.post(
        "/v1/video/generate",
        content=body,
        headers={**account.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_input"
    assert "body" in response.json()["error"]["fields"]
    assert http.get("/v1/jobs", headers=account.headers).json()["data"] == []
    assert "Traceback" not in api_log.read_text()


# ---- 5. secrets and caches -------------------------------------------------------------


@pytest.fixture(scope="module")
def asset(api: Api, runtime: Runtime) -> dict[str, Any]:
    """A rendered, ingested video of a new account, and that account's headers."""
    with runtime.db.transaction() as session:
        created = accounts.create_account(session=session, name="hostile", credits=Decimal(100))
    account = conftest.TestAccount(created.account_id, created.api_key)
    with httpx.Client(base_url=api.url, timeout=10) as http:
        client = HttpApi(http)
        job = wait_for_job(
            client, account, generate(client, account, "[sim latency=0.5]")["job_id"]
        )
        assert job["status"] == "completed", job
        found = http.get(f"/v1/media/{job['result']['media_asset_id']}", headers=account.headers)
        return {"headers": account.headers, **found.json()}


def test_signed_media_tokens_never_reach_the_access_log(api, api_log, http, asset):
    token = httpx.URL(asset["url"]).params["token"]
    assert http.get(asset["url"]).status_code == 200
    path = f"/v1/media/{asset['id']}/content"
    wait_for(lambda: f'"GET {path} HTTP/1.1" 200' in api_log.read_text(), timeout=10)
    assert token not in api_log.read_text()
    assert "token=" not in api_log.read_text()


def test_media_fetched_with_a_key_is_private_to_caches(http, asset):
    response = http.get(f"/v1/media/{asset['id']}/content", headers=asset["headers"])
    assert response.status_code == 200
    directives = {d.strip() for d in response.headers["Cache-Control"].split(",")}
    assert "private" in directives and "public" not in directives


def test_a_tampered_media_token_is_refused_with_its_own_code(http, asset):
    url = httpx.URL(asset["url"])
    token = url.params["token"]
    # A character inside the signature: the last one's low bits may be base64 padding,
    # which decodes to the same signature.
    at = token.rindex(".") + 3
    tampered = token[:at] + ("A" if token[at] != "A" else "B") + token[at + 1 :]
    response = http.get(url.copy_set_param("token", tampered))
    assert response.status_code == 403
    assert error_code(response) == "invalid_media_token"


def test_urls_are_never_built_from_a_forged_host(api, http, asset):
    """No PUBLIC_BASE_URL: answers name this machine as the client addressed it, and a
    request addressed to any other host is refused rather than echoed into URLs."""
    assert asset["url"].startswith(f"{api.url}/v1/media/{asset['id']}/content?token=")
    forged = http.get(f"/v1/media/{asset['id']}", headers={**asset["headers"], "Host": "evil.io"})
    assert forged.status_code == 400
    assert error_code(forged) == "bad_request"


def test_retry_after_is_only_sent_when_a_retry_is_asked_for(http, asset):
    for response in (
        http.get("/v1/credits", headers=asset["headers"]),
        http.get(f"/v1/media/{asset['id']}", headers=asset["headers"]),
    ):
        assert response.status_code == 200
        assert "Retry-After" not in response.headers


def test_get_on_the_submit_path_is_method_not_allowed(http, make_account):
    response = http.get("/v1/video/generate", headers=make_account().headers)
    assert response.status_code == 405
    assert error_code(response) == "method_not_allowed"
    assert "POST" in response.headers["Allow"]


# ---- 6. metrics ------------------------------------------------------------------------


def scrape(api: Api) -> dict[str, list[dict[str, str]]]:
    """The metrics port's samples: family name → each sample's labels."""
    response = httpx.get(api.metrics_url, timeout=10)
    assert response.status_code == 200
    return {
        family.name: [sample.labels for sample in family.samples]
        for family in text_string_to_metric_families(response.text)
    }


def test_metrics_are_not_served_on_the_public_port(api, http):
    public = http.get("/metrics")
    assert public.status_code == 404
    assert error_code(public) == "not_found"
    assert "naive_http_requests" in scrape(api)
    assert httpx.get(api.metrics_url.replace("/metrics", "/v1/credits")).status_code == 404


def test_scrapes_do_not_query_the_database_each_time(api):
    def sent() -> float:
        text = httpx.get(api.metrics_url, timeout=10).text
        return sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "naive_db_statements"
            for sample in family.samples
            if sample.name == "naive_db_statements_total"
        )

    # The live gauges (jobs in flight) are read at most once per period: six scrapes in a
    # row may straddle one refresh, never more.
    assert len({sent() for _ in range(6)}) <= 2


def test_invented_methods_create_no_new_series(api, http):
    def series() -> set[tuple[str, ...]]:
        return {
            tuple(sorted(labels.items()))
            for labels in scrape(api)["naive_http_requests"]
            if labels.get("route") == "unmatched"
        }

    http.request("PROPFIND", "/v1/jobs")  # the first unknown method opens the "other" series
    before = series()
    for _ in range(50):
        invented = "".join(random.choices(string.ascii_uppercase, k=8))
        assert http.request(invented, "/v1/jobs").status_code in (404, 405)
    assert series() == before
    methods = {labels["method"] for labels in scrape(api)["naive_http_requests"]}
    assert methods <= METHODS | {"other"}, methods
