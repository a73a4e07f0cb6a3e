"""Hostile clients and the rate limits (issue 11, item 2), on the real app and Redis.

Rotating invented `nv_sk_…` keys used to give each request a fresh rate-limit window and
a database lookup of its own. Failed authentications are now limited per client address,
before any database lookup, while callers at other addresses are unaffected.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import event

from services.api.app import create_app
from shared.config import load_settings

FAILURES_ALLOWED = 5


@pytest.fixture(scope="module")
def hardened(test_env: dict[str, str]) -> Iterator[Flask]:
    """The API with its Redis-backed limiter (the test broker) and a small failure budget."""
    app = create_app(
        load_settings(
            {
                **test_env,
                "RATE_LIMIT": "50 per minute",
                "RATE_LIMIT_AUTH_FAILURES": f"{FAILURES_ALLOWED} per minute",
            }
        )
    )
    yield app
    app.extensions["naive"].db.dispose()


def _address() -> str:
    """A client address of its own (TEST-NET-2), so runs sharing Redis never meet."""
    return f"198.51.{secrets.randbelow(256)}.{secrets.randbelow(256)}"


def _from(app: Flask, address: str) -> FlaskClient:
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _invented_key() -> dict[str, str]:
    return {"Authorization": f"Bearer nv_sk_{secrets.token_urlsafe(32)}"}


@pytest.fixture
def statements(hardened: Flask) -> Iterator[Callable[[], int]]:
    """How many SQL statements the app has sent since the fixture started."""
    engine = hardened.extensions["naive"].db.engine
    sent = [0]

    def count(*_: Any) -> None:
        sent[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    yield lambda: sent[0]
    event.remove(engine, "before_cursor_execute", count)


def test_rotating_invented_keys_is_refused_per_address_without_database_lookups(
    hardened: Flask, statements: Callable[[], int]
) -> None:
    hostile = _from(hardened, _address())
    codes = [hostile.get("/v1/credits", headers=_invented_key()).status_code for _ in range(5)]
    assert codes == [401] * FAILURES_ALLOWED

    looked_up = statements()
    for _ in range(20):
        refused = hostile.get("/v1/credits", headers=_invented_key())
        assert refused.status_code == 429
        assert refused.json is not None
        assert refused.json["error"]["code"] == "rate_limited"
        assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert statements() == looked_up  # refused before any database lookup


def test_requests_without_a_key_spend_the_same_budget(hardened: Flask) -> None:
    hostile = _from(hardened, _address())
    codes = [hostile.get("/v1/jobs").status_code for _ in range(FAILURES_ALLOWED + 1)]
    assert codes == [401] * FAILURES_ALLOWED + [429]
    refused = hostile.post("/v1/video/generate", json={}, headers=_invented_key())
    assert (refused.status_code, refused.json["error"]["code"]) == (429, "rate_limited")


def test_a_valid_key_at_another_address_is_unaffected(
    hardened: Flask, make_account: Callable[..., Any]
) -> None:
    hostile = _from(hardened, _address())
    for _ in range(FAILURES_ALLOWED + 3):
        hostile.get("/v1/credits", headers=_invented_key())
    assert hostile.get("/v1/credits", headers=_invented_key()).status_code == 429

    customer = make_account()
    answer = _from(hardened, _address()).get("/v1/credits", headers=customer.headers)
    assert answer.status_code == 200
    assert int(answer.headers["X-RateLimit-Remaining"]) == 49
    assert "Retry-After" not in answer.headers


def test_a_customer_behind_the_guessing_address_keeps_its_access(
    hardened: Flask, make_account: Callable[..., Any]
) -> None:
    """A NAT or a proxy shares one address: a key that authenticated lately still passes."""
    shared = _address()
    customer = make_account()
    client = _from(hardened, shared)
    assert client.get("/v1/credits", headers=customer.headers).status_code == 200
    for _ in range(FAILURES_ALLOWED + 3):
        client.get("/v1/credits", headers=_invented_key())
    assert client.get("/v1/credits", headers=_invented_key()).status_code == 429
    assert client.get("/v1/credits", headers=customer.headers).status_code == 200


def test_a_customer_within_its_budget_is_never_refused_for_a_few_typos(
    hardened: Flask, make_account: Callable[..., Any]
) -> None:
    customer = make_account()
    client = _from(hardened, _address())
    for _ in range(FAILURES_ALLOWED - 1):
        assert client.get("/v1/credits", headers=_invented_key()).status_code == 401
    assert client.get("/v1/credits", headers=customer.headers).status_code == 200
