"""Top-up: an account that spent its credits gets more from an operator, through
`naive admin grant-credits` or the operator API, as a `topup` ledger entry; the 402 says how."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from shared.ledger.models import LedgerEntry
from shared.runtime import Runtime
from tests.helpers import KLING_T2V, naive_admin

ADMIN_TOKEN = "operator-token-for-tests-0123456789"
BODY = {"model": KLING_T2V, "input": {"prompt": "A kite at noon", "duration": "5"}}


def _topups(runtime: Runtime, account_id: uuid.UUID) -> list[tuple[int, str | None]]:
    with runtime.db.transaction() as session:
        rows = session.execute(
            select(LedgerEntry.amount, LedgerEntry.note)
            .where(LedgerEntry.account_id == account_id, LedgerEntry.kind == "topup")
            .order_by(LedgerEntry.created_at)
        )
        return [(amount, note) for amount, note in rows]


@pytest.fixture(scope="module")
def operated(make_app: Callable[..., Flask]) -> Flask:
    return make_app(ADMIN_TOKEN=ADMIN_TOKEN)


def _grant(client: FlaskClient, account_id: object, token: str = ADMIN_TOKEN, **body: Any) -> Any:
    return client.post(
        f"/v1/admin/accounts/{account_id}/credits",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    )


def test_the_402_says_how_to_get_credits_and_a_grant_lets_the_account_submit_again(
    operated: Flask, make_account: Callable[..., Any], runtime: Runtime
) -> None:
    client = operated.test_client()
    poor = make_account("1")
    refused = client.post("/v1/video/generate", json=BODY, headers=poor.headers)
    assert refused.status_code == 402
    hint = refused.json["error"]["hint"]
    assert f"naive admin grant-credits --account {poor.id} --credits N" in hint
    assert f"POST /v1/admin/accounts/{poor.id}/credits" in hint

    granted = _grant(client, poor.id, credits=10, note="support ticket 42")
    assert granted.status_code == 201, granted.json
    answer = granted.json
    assert answer["account_id"] == str(poor.id)
    assert (answer["balance"], answer["held"], answer["available"]) == (11.0, 0.0, 11.0)
    assert answer["entry"]["kind"] == "topup" and answer["entry"]["amount"] == 10.0
    assert _topups(runtime, poor.id) == [(100, "grant"), (1000, "support ticket 42")]
    assert client.post("/v1/video/generate", json=BODY, headers=poor.headers).status_code == 202
    credits = client.get("/v1/credits", headers=poor.headers).json
    assert (credits["balance"], credits["held"]) == (11.0, 3.5)


def test_the_operator_api_takes_only_the_operator_token(
    operated: Flask, client: FlaskClient, make_account: Callable[..., Any], runtime: Runtime
) -> None:
    account = make_account()
    admin = operated.test_client()
    # An account's API key is no operator token.
    by_customer = admin.post(
        f"/v1/admin/accounts/{account.id}/credits", json={"credits": 5}, headers=account.headers
    )
    assert by_customer.status_code == 401
    assert by_customer.json["error"]["code"] == "unauthorized"
    assert _grant(admin, account.id, token="wrong-" + ADMIN_TOKEN, credits=5).status_code == 401
    # Without ADMIN_TOKEN configured the API is off: the route is not found, whatever is sent.
    off = _grant(client, account.id, credits=5)
    assert off.status_code == 404 and off.json["error"]["code"] == "not_found"
    assert _grant(client, account.id, credits="nonsense").status_code == 404
    assert _topups(runtime, account.id) == [(10000, "grant")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"credits": 0}, "credits"),
        ({"credits": -5}, "credits"),
        ({"credits": "1.005"}, "credits"),
        ({"credits": 2_000_000}, "credits"),
        ({"credits": 5, "note": "x" * 201}, "note"),
        ({"credits": 5, "extra": True}, "extra"),
    ],
)
def test_a_bad_grant_is_refused_naming_the_field(
    operated: Flask, make_account: Callable[..., Any], body: dict[str, Any], field: str
) -> None:
    refused = _grant(operated.test_client(), make_account().id, **body)
    assert refused.status_code == 422
    assert field in refused.json["error"]["fields"]


def test_granting_to_an_unknown_account_is_not_found(operated: Flask) -> None:
    for account_id in (uuid.uuid4(), "not-a-uuid"):
        missing = _grant(operated.test_client(), account_id, credits=5)
        assert missing.status_code == 404 and missing.json["error"]["code"] == "not_found"


def test_the_operator_api_is_documented(client: FlaskClient) -> None:
    document = client.get("/openapi.json").json
    operation = document["paths"]["/v1/admin/accounts/{account_id}/credits"]["post"]
    assert operation["security"] == [{"operator": []}]
    assert {"201", "401", "404", "422"} <= set(operation["responses"])
    assert document["components"]["securitySchemes"]["operator"]["scheme"] == "bearer"


def test_naive_admin_grant_credits(
    test_env: dict[str, str], make_account: Callable[..., Any], runtime: Runtime
) -> None:
    account = make_account("0")
    ran = naive_admin(
        test_env, "admin", "grant-credits", "--account", str(account.id), "--credits", "25.5",
        "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    envelope = json.loads(ran.stdout)
    assert (envelope["success"], envelope["action"]) == (True, "admin.grant-credits")
    result = envelope["result"]
    assert result["account_id"] == str(account.id)
    assert (result["balance"], result["available"]) == (25.5, 25.5)
    assert result["entry"]["kind"] == "topup" and result["entry"]["amount"] == 25.5
    assert _topups(runtime, account.id) == [(2550, "granted by an operator")]

    unknown = naive_admin(test_env, "admin", "grant-credits", "--account", str(uuid.uuid4()),
                     "--credits", "5", "--json")  # fmt: skip
    assert unknown.returncode == 2
    assert json.loads(unknown.stdout)["success"] is False
    assert "No account" in json.loads(unknown.stdout)["result"]["message"]
    negative = naive_admin(test_env, "admin", "grant-credits", "--account", str(account.id),
                      "--credits", "-1", "--json")  # fmt: skip
    assert negative.returncode == 2
    assert "--credits" in json.loads(negative.stdout)["result"]["message"]
    assert _topups(runtime, account.id) == [(2550, "granted by an operator")]
