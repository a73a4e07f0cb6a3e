"""The API's contract: bad input of every kind is a 4xx in the one error shape and stores
nothing; another account's things are not found; listing, media and catalog shapes."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from sqlalchemy import event, func, select

from shared.catalog.builtin import all_models, normalize_input
from shared.errors import InvalidInput
from shared.jobs.models import Job
from shared.jobs.schemas import IDEMPOTENCY_KEY_RULE, MAX_METADATA_KEY, MAX_METADATA_KEYS
from shared.media import url_policy
from tests.helpers import KLING_I2V, KLING_T2V, balance, generate, wait_for_job

GOOD_INPUT = {"prompt": "A fox in the snow", "duration": "5", "aspect_ratio": "16:9"}

BAD_BODIES = [
    ({"input": GOOD_INPUT}, 422, "invalid_input", "model"),
    ({"model": "fal-ai/kling-video/v9/ultra", "input": GOOD_INPUT}, 404, "invalid_model", None),
    ({"model": 42, "input": GOOD_INPUT}, 422, "invalid_input", "model"),
    ({"model": KLING_T2V}, 422, "invalid_input", "input"),
    ({"model": KLING_T2V, "input": ["prompt"]}, 422, "invalid_input", "input"),
    ({"model": KLING_T2V, "input": {"duration": "5"}}, 422, "invalid_input", "input.prompt"),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "duration": "2"}},
        422,
        "invalid_input",
        "input.duration",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "duration": "five"}},
        422,
        "invalid_input",
        "input.duration",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "duration": 5.5}},
        422,
        "invalid_input",
        "input.duration",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "aspect_ratio": "4:3"}},
        422,
        "invalid_input",
        "input.aspect_ratio",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "prompt": 123}},
        422,
        "invalid_input",
        "input.prompt",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "prompt": ""}},
        422,
        "invalid_input",
        "input.prompt",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "cfg_scale": "high"}},
        422,
        "invalid_input",
        "input.cfg_scale",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "cfg_scale": 1.5}},
        422,
        "invalid_input",
        "input.cfg_scale",
    ),
    (
        {"model": KLING_T2V, "input": {**GOOD_INPUT, "generate_audio": "yes"}},
        422,
        "invalid_input",
        "input.generate_audio",
    ),
    ({"model": KLING_T2V, "input": {**GOOD_INPUT, "seed": 7}}, 422, "invalid_input", "input.seed"),
    (
        {"model": "fal-ai/kling-video/v3/pro/image-to-video", "input": {"prompt": "x"}},
        422,
        "invalid_input",
        "input.image_url",
    ),
    (
        {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": "tag"},
        422,
        "invalid_input",
        "metadata",
    ),
    (
        {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": {str(n): n for n in range(51)}},
        422,
        "invalid_input",
        "metadata",
    ),
    (
        {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": {"k" * 41: 1}},
        422,
        "invalid_input",
        f"metadata.{'k' * 39}….[key]",  # a long key is named by a short prefix
    ),
    (
        {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": {"notes": "x" * 16_384}},
        422,
        "invalid_input",
        "metadata",
    ),
    ({"model": KLING_T2V, "input": GOOD_INPUT, "webhook": "x"}, 422, "invalid_input", "webhook"),
    ([KLING_T2V], 422, "invalid_input", "body"),
]


def _jobs_of(runtime, account) -> int:
    with runtime.db.transaction() as session:
        return session.scalar(select(func.count()).where(Job.account_id == account.id))


@pytest.mark.parametrize(("body", "status", "code", "field"), BAD_BODIES)
def test_bad_generate_bodies_are_refused_in_the_error_shape(
    client, account, runtime, body, status, code, field
):
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == status
    error = response.json["error"]
    assert error["code"] == code
    assert error["message"]
    if field is not None:
        assert field in error["fields"], error
    if code == "invalid_model":
        assert error["models_url"] == "/v1/video/models"
    assert _jobs_of(runtime, account) == 0
    assert balance(runtime, account).available == 10000


def test_metadata_at_its_bounds_is_accepted_and_a_batch_item_is_bounded_too(client, account):
    """50 keys of 40 characters within 16 KiB is taken; a batch item's metadata has the
    same bounds as a job's."""
    keys = [f"{n:02d}".ljust(MAX_METADATA_KEY, "k") for n in range(MAX_METADATA_KEYS)]
    metadata = {key: "v" * 200 for key in keys}
    body = {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": metadata}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 202, response.json
    item = {"model": KLING_T2V, "input": GOOD_INPUT, "metadata": {"notes": "x" * 16_384}}
    response = client.post("/v1/video/batches", json={"items": [item]}, headers=account.headers)
    assert response.status_code == 422
    assert list(response.json["error"]["fields"]) == ["items.0.metadata"]


@pytest.mark.parametrize("model", all_models(), ids=lambda model: model.id)
def test_a_blank_prompt_is_refused_by_every_model(model):
    """Only whitespace describes nothing, yet would be rendered and charged."""
    raw = {"prompt": " \n\t\u3000"}
    if "image_url" in model.required:
        raw["image_url"] = "https://example.com/cat.png"
    with pytest.raises(InvalidInput) as refused:
        normalize_input(model, raw)
    assert refused.value.extra["fields"] == {"input.prompt": "must not be blank (only whitespace)"}


def test_a_blank_prompt_is_refused_at_submit_and_nothing_is_held(client, account, runtime):
    body = {"model": KLING_T2V, "input": {**GOOD_INPUT, "prompt": "   "}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422
    assert list(response.json["error"]["fields"]) == ["input.prompt"]
    assert _jobs_of(runtime, account) == 0
    assert balance(runtime, account).available == 10000


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"model": KLING_T2V, "input": {**GOOD_INPUT, "prompt": "p" * 3000}}, "input.prompt"),
        ({"model": KLING_I2V, "input": {"image_url": "ftp://" + "i" * 3000}}, "input.image_url"),
        ({"model": "m" * 3000, "input": GOOD_INPUT}, None),
    ],
)
def test_an_error_quotes_a_long_value_by_a_short_prefix(client, account, body, field):
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code in (404, 422)
    error = response.json["error"]
    said = error["fields"][field] if field else error["message"]
    assert "…" in said and len(said) < 200, said
    assert len(response.get_data()) < 1000


def test_unknown_model_suggests_close_ids(client, account):
    body = {"model": "fal-ai/kling-video/v3/pro/text-to-vid", "input": GOOD_INPUT}
    error = client.post("/v1/video/generate", json=body, headers=account.headers).json["error"]
    assert KLING_T2V in error["suggestions"]


def test_whole_number_duration_is_accepted(client, account):
    body = {"model": KLING_T2V, "input": {**GOOD_INPUT, "duration": 5}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 202
    assert response.json["estimated_credits"] == 3.5


@pytest.mark.parametrize(
    ("data", "content_type"),
    [("{not json", "application/json"), ("", "application/json"), ("model=x", "text/plain")],
)
def test_non_json_bodies_are_refused(client, account, runtime, data, content_type):
    response = client.post(
        "/v1/video/generate", data=data, content_type=content_type, headers=account.headers
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_input"
    assert _jobs_of(runtime, account) == 0


def test_oversized_body_is_refused(client, account, runtime):
    huge = {"model": KLING_T2V, "input": {"prompt": "x" * (3 * 1024 * 1024)}}
    response = client.post("/v1/video/generate", json=huge, headers=account.headers)
    assert response.status_code == 413
    assert response.json["error"]["code"] == "payload_too_large"
    limit = runtime.settings.max_request_bytes
    assert (
        response.json["error"]["message"] == f"The request body is over the limit of {limit} bytes."
    )
    assert _jobs_of(runtime, account) == 0


def test_a_path_no_route_takes_is_named_in_the_error_shape(client, account):
    response = client.get("/v1/video/not-a-uuid", headers=account.headers)
    assert response.status_code == 404
    assert response.json["error"] == {
        "code": "not_found",
        "message": "No route GET /v1/video/not-a-uuid; every route is in /openapi.json.",
    }


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer nv_sk_not-a-real-key"},
        {"Authorization": "Bearer sk-something-else"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/v1/video/generate"),
        ("get", "/v1/jobs"),
        ("get", "/v1/credits"),
        ("get", "/v1/media"),
    ],
)
def test_missing_or_bad_key_is_unauthorized(client, headers, method, path):
    response = getattr(client, method)(path, headers=headers, json={})
    assert response.status_code == 401
    assert response.json["error"]["code"] == "unauthorized"


@pytest.mark.parametrize("key", ["k" * 201, "", "café", "two words", "tab\tkey"])
@pytest.mark.parametrize("path", ["/v1/video/generate", "/v1/video/batches"])
def test_bad_idempotency_key_is_refused(client, account, runtime, key, path):
    headers = {**account.headers, "Idempotency-Key": key}
    job = {"model": KLING_T2V, "input": GOOD_INPUT}
    body = job if path.endswith("generate") else {"items": [job]}
    response = client.post(path, json=body, headers=headers)
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"Idempotency-Key": IDEMPOTENCY_KEY_RULE}
    assert _jobs_of(runtime, account) == 0


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/jobs?limit=abc", 422, "invalid_input"),
        ("/v1/jobs?limit=0", 422, "invalid_input"),
        ("/v1/jobs?status=bogus", 422, "invalid_input"),
        ("/v1/jobs?cursor=%%%", 422, "invalid_input"),
        ("/v1/jobs/not-a-uuid", 404, "not_found"),
        ("/v1/jobs/8a3f6a55-8b1b-4f59-9d5b-1f2a3b4c5d6e", 404, "not_found"),
        ("/v1/video/8a3f6a55-8b1b-4f59-9d5b-1f2a3b4c5d6e", 404, "not_found"),
        ("/v1/video/pricing?model=nope", 404, "invalid_model"),
        ("/v1/video/pricing", 422, "invalid_input"),
        (f"/v1/video/pricing?model={KLING_T2V}&duration=99", 422, "invalid_input"),
        ("/v1/media?source_type=bogus", 422, "invalid_input"),
        ("/v1/media?offset=-1", 422, "invalid_input"),
        ("/v1/media/123", 404, "not_found"),
        ("/v1/nothing-here", 404, "not_found"),
    ],
)
def test_bad_queries_and_paths_answer_in_the_error_shape(client, account, path, status, code):
    response = client.get(path, headers=account.headers)
    assert response.status_code == status
    assert response.json["error"]["code"] == code


def test_wrong_method_answers_in_the_error_shape(client, account):
    response = client.put("/v1/video/generate", headers=account.headers)
    assert response.status_code == 405
    assert response.json["error"]["code"] == "method_not_allowed"


def test_another_accounts_job_and_media_are_not_found(client, make_account):
    owner, stranger = make_account(), make_account()
    accepted = generate(client, owner, "Private footage [sim latency=0.5]")
    job = wait_for_job(client, owner, accepted["job_id"])
    asset_id = job["result"]["media_asset_id"]
    for method, path in [
        ("get", f"/v1/jobs/{job['id']}"),
        ("get", f"/v1/video/{job['id']}"),
        ("delete", f"/v1/jobs/{job['id']}"),
        ("get", f"/v1/media/{asset_id}"),
        ("get", f"/v1/media/{asset_id}/content"),
        ("get", f"/v1/media/{asset_id}/poster"),
    ]:
        response = getattr(client, method)(path, headers=stranger.headers)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
    assert client.get("/v1/jobs", headers=stranger.headers).json["data"] == []
    assert client.get("/v1/media", headers=stranger.headers).json["total"] == 0


def test_media_content_supports_range_requests_and_signed_urls(client, account):
    job = wait_for_job(
        client, account, generate(client, account, "Seek me [sim latency=0.5]")["job_id"]
    )
    asset = client.get(f"/v1/media/{job['result']['media_asset_id']}", headers=account.headers).json
    path = "/" + asset["url"].split("/", 3)[3]
    with client.get(path, headers={"Range": "bytes=0-99"}) as partial:  # signed, no key
        assert partial.status_code == 206
        assert len(partial.data) == 100
        assert partial.headers["Content-Range"] == f"bytes 0-99/{asset['size_bytes']}"
        assert partial.headers["Accept-Ranges"] == "bytes"
    tampered = path.replace("token=", "token=x")
    assert client.get(tampered).status_code == 403
    with client.get(f"/v1/media/{asset['id']}/poster", headers=account.headers) as poster:
        assert poster.status_code == 200
        assert poster.mimetype == "image/jpeg"
        assert poster.data[:2] == b"\xff\xd8"


def test_jobs_list_is_newest_first_filtered_and_paginated(idle_app, account):
    client = idle_app.test_client()
    ids = [generate(client, account, f"Page {i}")["job_id"] for i in range(3)]
    first = client.get("/v1/jobs?limit=2", headers=account.headers).json
    assert [job["id"] for job in first["data"]] == ids[::-1][:2]
    assert first["has_more"] is True
    second = client.get(
        f"/v1/jobs?limit=2&cursor={first['next_cursor']}", headers=account.headers
    ).json
    assert [job["id"] for job in second["data"]] == [ids[0]]
    assert second["has_more"] is False and second["next_cursor"] is None
    queued = client.get(
        "/v1/jobs?status=queued&type=video_generation", headers=account.headers
    ).json
    assert len(queued["data"]) == 3
    assert client.get("/v1/jobs?status=completed", headers=account.headers).json["data"] == []


def test_models_catalog_lists_the_spec_models(client, account):
    catalog = client.get("/v1/video/models", headers=account.headers).json
    ids = {model["id"] for model in catalog["data"]}
    assert {
        KLING_T2V,
        "fal-ai/kling-video/v3/pro/image-to-video",
        "fal-ai/kling-video/v3/standard/text-to-video",
        "fal-ai/minimax-video/video-01-live",
        "fal-ai/wan/v2.7/text-to-video",
    } <= ids
    kling = next(model for model in catalog["data"] if model["id"] == KLING_T2V)
    assert kling["mode"] == "text-to-video"
    assert kling["parameters"]["duration"]["default"] == "5"
    assert kling["parameters"]["prompt"]["required"] is True
    assert kling["pricing"] == {"unit_price_usd": 0.07, "unit": "second", "credit_value_usd": 0.5}


def test_operations_endpoints(client):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz").json
    assert ready["status"] == "ready" and ready["media_free_bytes"] > 0
    assert client.get("/metrics").status_code == 404  # on its own port only


def test_media_search_matches_title_words_and_treats_wildcards_literally(client, account):
    job = generate(client, account, "An owl at midnight [sim latency=0.5]")
    wait_for_job(client, account, job["job_id"])
    found = client.get("/v1/media?search=OWL", headers=account.headers).json
    assert [asset["source_job_id"] for asset in found["data"]] == [job["job_id"]]
    assert client.get("/v1/media?search=%25", headers=account.headers).json["total"] == 0
    assert client.get("/v1/media?search=eagle", headers=account.headers).json["total"] == 0


def test_rate_limit_is_per_key_with_retry_after(make_app, make_account):
    client = make_app(RATE_LIMIT="3 per minute").test_client()
    busy, other = make_account(), make_account()
    answers = [client.get("/v1/credits", headers=busy.headers) for _ in range(4)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429]
    limited = answers[-1]
    assert limited.json["error"]["code"] == "rate_limited"
    assert 0 < int(limited.headers["Retry-After"]) <= 60
    assert client.get("/v1/credits", headers=other.headers).status_code == 200
    assert client.get("/healthz").status_code == 200  # operations are not limited


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1/credits",
        "http://localhost/image.png",
        "http://10.1.2.3/image.png",
        "http://192.168.0.10/image.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/image.png",
        "file:///etc/passwd",
        "ftp://example.com/image.png",
    ],
)
def test_image_urls_at_private_addresses_are_refused(client, account, runtime, url):
    body = {"model": "fal-ai/kling-video/v3/pro/image-to-video", "input": {"image_url": url}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422
    assert "input.image_url" in response.json["error"]["fields"]
    assert _jobs_of(runtime, account) == 0


def test_no_transaction_is_open_while_a_host_name_resolves(client, account, monkeypatch):
    """A submit or a batch naming an image's host resolves it with no transaction open: a
    slow resolver cannot hold connections idle in transaction (a connection kept idle
    between transactions is no matter)."""
    engine = client.application.extensions["naive"].db.engine
    transactions = {"open": 0}
    open_while_resolving: list[int] = []

    def began(_connection: Any) -> None:
        transactions["open"] += 1

    def ended(_connection: Any) -> None:
        transactions["open"] -= 1

    def resolve(host: str) -> list[Any]:
        open_while_resolving.append(transactions["open"])
        return [ipaddress.ip_address("93.184.216.34")]

    monkeypatch.setattr(url_policy, "resolve", resolve)
    image = {"image_url": "https://images.example.com/a.png", "prompt": "x"}
    submit = {"model": KLING_I2V, "input": image}
    batch = {"items": [{"model": KLING_I2V, "input": image}]}
    hooks = (("begin", began), ("commit", ended), ("rollback", ended))
    for name, hook in hooks:
        event.listen(engine, name, hook)
    try:
        for path, body in (("/v1/video/generate", submit), ("/v1/video/batches", batch)):
            response = client.post(path, json=body, headers=account.headers)
            assert response.status_code == 202, response.json
    finally:
        for name, hook in hooks:
            event.remove(engine, name, hook)
    assert open_while_resolving == [0, 0]  # the submit's image, the batch's


def test_private_image_urls_can_be_allowed_for_a_closed_network(make_app, account):
    client = make_app(ALLOW_PRIVATE_IMAGE_URLS="1").test_client()
    body = {
        "model": "fal-ai/kling-video/v3/pro/image-to-video",
        "input": {"image_url": "http://127.0.0.1:9/image.png", "prompt": "x [sim latency=60]"},
    }
    assert client.post("/v1/video/generate", json=body, headers=account.headers).status_code == 202


@pytest.mark.parametrize(
    "path",
    [
        "/v1/media?search=%00",
        "/v1/jobs?type=%00",
        "/v1/jobs?limit=1_0",
        # a cursor whose time has no zone
        "/v1/jobs?cursor=MjAyMC0wMS0wMXwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA=",
    ],
)
def test_hostile_query_values_are_invalid_input_not_500(client, account, path):
    response = client.get(path, headers=account.headers)
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_input"


@pytest.mark.parametrize(
    ("method", "path", "body", "field", "said"),
    [
        ("GET", "/v1/jobs?limit=abc", None, "limit", "must be an integer"),
        ("GET", "/v1/jobs?type=foo", None, "type", "Input should be 'video_generation'"),
        ("GET", "/v1/media?offset=99999999999999999999", None, "offset", "is too large"),
        (
            "POST",
            "/v1/budgets",
            {"scope": "key", "period": "day", "credits": 5},
            "body",
            'key_id is given with scope "key", and only then',
        ),
    ],
)
def test_a_refusal_names_the_field_in_plain_words(client, account, method, path, body, field, said):
    """What each bad field gets is our own sentence, without pydantic's "Value error, "."""
    response = client.open(path, method=method, json=body, headers=account.headers)
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {field: said}


@pytest.mark.parametrize(
    "raw",
    [
        '{"model":"fal-ai/kling-video/v3/pro/text-to-video","input":{"prompt":"ab","cfg_scale":NaN}}',
        '{"model":"fal-ai/kling-video/v3/pro/text-to-video","input":{"prompt":"a"},'
        '"metadata":{"x":Infinity}}',
        '{"model":"fal-ai/kling-video/v3/pro/text-to-video","input":{"prompt":"a\\u0000b"}}',
        '{"model":"fal-ai/kling-video/v3/pro/image-to-video","input":{"image_url":"http://["}}',
    ],
)
def test_hostile_bodies_are_invalid_input_not_500(client, account, runtime, raw):
    response = client.post(
        "/v1/video/generate", data=raw, content_type="application/json", headers=account.headers
    )
    assert response.status_code == 422
    assert response.json["error"]["code"] == "invalid_input"
    assert _jobs_of(runtime, account) == 0


def test_an_unsatisfiable_range_keeps_its_content_range(client, account):
    job = wait_for_job(
        client, account, generate(client, account, "Range [sim latency=0.5]")["job_id"]
    )
    asset_id = job["result"]["media_asset_id"]
    response = client.get(
        f"/v1/media/{asset_id}/content", headers={**account.headers, "Range": "bytes=999999999-"}
    )
    assert response.status_code == 416
    assert response.json["error"]["code"] == "range_not_satisfiable"
    assert response.headers["Content-Range"].startswith("bytes */")


def test_a_range_that_is_not_one_byte_range_is_ignored_and_the_whole_file_sent(client, account):
    """Another unit must be ignored (RFC 9110, 14.2); several ranges or an unreadable one
    may be. All were answered 416 `range_not_satisfiable`, as if past the end."""
    job = wait_for_job(
        client, account, generate(client, account, "Ranges [sim latency=0.5]")["job_id"]
    )
    asset = client.get(f"/v1/media/{job['result']['media_asset_id']}", headers=account.headers)
    size = asset.json["size_bytes"]
    path = f"/v1/media/{asset.json['id']}/content"
    for header in ("items=0-5", "bytes=0-1,5-6", "bytes=abc", "bytes=5-2"):
        with client.get(path, headers={**account.headers, "Range": header}) as whole:
            assert whole.status_code == 200, (header, whole.status_code)
            assert len(whole.data) == size
            assert "Content-Range" not in whole.headers
    with client.get(path, headers={**account.headers, "Range": "bytes=2-5"}) as one:
        assert (one.status_code, len(one.data)) == (206, 4)
        assert one.headers["Content-Range"] == f"bytes 2-5/{size}"
