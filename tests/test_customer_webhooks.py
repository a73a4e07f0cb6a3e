"""Customer webhooks on the real stack: an account's subscriptions (created with a secret
shown once, listed, read, changed, deleted; another account's are not found), and the
address policy on their URLs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from shared.jobs import events
from shared.jobs.status import JobStatus
from shared.webhooks.schemas import EventType
from tests import conftest

RECEIVER = "http://127.0.0.1:9/hooks"


@pytest.fixture(scope="module")
def private_ok(make_app: Callable[..., Flask]) -> Flask:
    """An API that accepts loopback webhook URLs, as a closed network's operator allows."""
    return make_app(WEBHOOK_ALLOW_PRIVATE_URLS="1")


@pytest.fixture
def api(private_ok: Flask) -> FlaskClient:
    return private_ok.test_client()


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
    assert set(created) == {"id", "url", "events", "description", "secret", "created_at"}
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
    ],
)
def test_invalid_subscriptions_are_refused(
    api: FlaskClient, account: conftest.TestAccount, body: dict[str, Any], field: str
) -> None:
    answer = api.post("/v1/webhooks", json=body, headers=account.headers)
    assert answer.status_code == 422
    assert field in answer.get_json()["error"]["fields"]


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://[::1]/hook"]
)
def test_private_urls_are_refused_unless_allowed(
    client: FlaskClient, account: conftest.TestAccount, url: str
) -> None:
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
