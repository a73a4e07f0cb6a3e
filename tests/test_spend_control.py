"""Budgets and binding quotes on the real stack (API, worker, PostgreSQL, Redis)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
import pytest
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import delete, func, select, update

from shared import accounts
from shared.accounts.models import Account
from shared.catalog.models import BindingQuote, ModelPrice
from shared.db import utcnow
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import KLING_T2V, job_entries, naive_admin, wait_for_job

PROMPT = {"prompt": "A red kite over the dunes", "duration": "5"}  # 3.5 credits


def submit(client: FlaskClient, account: Any, **extra: Any) -> Any:
    body = {"model": KLING_T2V, "input": PROMPT, **extra}
    return client.post("/v1/video/generate", json=body, headers=account.headers)


def set_budget(client: FlaskClient, account: Any, **body: Any) -> Any:
    return client.post("/v1/budgets", json=body, headers=account.headers)


# ---- budgets ---------------------------------------------------------------------------


def test_a_budget_is_set_replaced_listed_and_removed(
    client: FlaskClient, account: conftest.TestAccount
) -> None:
    made = set_budget(client, account, scope="account", period="day", credits=7)
    assert made.status_code == 201, made.json
    assert made.json["remaining_credits"] == 7 and made.json["spent_credits"] == 0
    replaced = set_budget(client, account, scope="account", period="day", credits=8.5)
    assert replaced.status_code == 200 and replaced.json["id"] == made.json["id"]
    assert submit(client, account).status_code == 202
    listed = client.get("/v1/budgets", headers=account.headers).json["data"]
    assert [(b["credits"], b["spent_credits"], b["remaining_credits"]) for b in listed] == [
        (8.5, 3.5, 5.0)
    ]
    gone = client.delete(f"/v1/budgets/{made.json['id']}", headers=account.headers)
    assert gone.status_code == 204
    assert client.get("/v1/budgets", headers=account.headers).json["data"] == []


def test_a_submit_over_budget_is_refused_with_what_is_left(
    client: FlaskClient, account: conftest.TestAccount
) -> None:
    set_budget(client, account, scope="account", period="month", credits=5)
    assert submit(client, account).status_code == 202
    labels = {"scope": "account", "period": "month"}
    before = REGISTRY.get_sample_value("naive_budget_refusals_total", labels) or 0
    refused = submit(client, account)
    assert refused.status_code == 402
    assert REGISTRY.get_sample_value("naive_budget_refusals_total", labels) == before + 1
    error = refused.json["error"]
    assert error["code"] == "budget_exceeded"
    assert error["budget"]["period"] == "month" and error["budget"]["credits"] == 5
    assert "the monthly budget of the account has 1.5 of 5.0 left" in error["message"]
    # UTC written with Z, as every other time in the API; a key only for a key's budget
    assert error["budget"]["period_start"].endswith("-01T00:00:00Z")
    assert "key_id" not in error["budget"]
    assert (error["spent_credits"], error["remaining_credits"], error["estimated_credits"]) == (
        3.5,
        1.5,
        3.5,
    )


def test_concurrent_submits_at_the_boundary_never_overspend(
    live_api: str, make_account: Callable[..., conftest.TestAccount], runtime: Runtime
) -> None:
    account = make_account("1000")
    with httpx.Client(base_url=live_api, headers=account.headers, timeout=30) as http:
        assert http.post(
            "/v1/budgets", json={"scope": "account", "period": "day", "credits": 10.5}
        ).is_success

        def one(_: int) -> int:
            body = {"model": KLING_T2V, "input": PROMPT}
            return http.post("/v1/video/generate", json=body).status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(one, range(8)))
    assert sorted(codes) == [202] * 3 + [402] * 5, codes


def test_a_key_budget_binds_that_key_only(
    client: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    with runtime.db.transaction() as session:
        second_key = accounts.create_api_key(session=session, account_id=account.id)
    second = conftest.TestAccount(account.id, second_key)
    with runtime.db.transaction() as session:
        key_id = accounts.authenticate(session=session, api_key=second_key).key_id
    made = set_budget(client, account, scope="key", key_id=str(key_id), period="day", credits=3.5)
    assert made.status_code == 201, made.json
    assert submit(client, second).status_code == 202
    refused = submit(client, second)
    assert refused.status_code == 402 and refused.json["error"]["budget"]["key_id"] == str(key_id)
    assert submit(client, account).status_code == 202  # the first key has no budget


def test_cancelled_jobs_give_their_budget_back(
    client: FlaskClient, idle_app: Any, account: conftest.TestAccount
) -> None:
    idle = idle_app.test_client()  # nothing runs its jobs: they stay queued
    set_budget(idle, account, scope="account", period="day", credits=3.5)
    first = submit(idle, account).json["job_id"]
    assert submit(idle, account).status_code == 402
    assert idle.delete(f"/v1/jobs/{first}", headers=account.headers).status_code == 200
    assert submit(idle, account).status_code == 202


@pytest.mark.parametrize(
    "body",
    [
        {"scope": "key", "period": "day", "credits": 1},  # no key_id
        {"scope": "account", "key_id": str(uuid.uuid4()), "period": "day", "credits": 1},
        {"scope": "key", "key_id": str(uuid.uuid4()), "period": "day", "credits": 1},  # not ours
        {"scope": "account", "period": "week", "credits": 1},
        {"scope": "account", "period": "day", "credits": -1},
    ],
)
def test_bad_budgets_are_refused_by_field(
    client: FlaskClient, account: conftest.TestAccount, body: dict[str, Any]
) -> None:
    answer = set_budget(client, account, **body)
    assert answer.status_code == 422 and answer.json["error"]["code"] == "invalid_input"


# ---- binding quotes --------------------------------------------------------------------


@pytest.fixture
def price_change(runtime: Runtime) -> Iterator[Callable[[str], None]]:
    """Overlay the catalog with a new per-second price for Kling, as the platform's listing
    would; removed afterwards (the catalog is shared by the session's tests)."""

    def change(price: str) -> None:
        with runtime.db.transaction() as session:
            session.merge(
                ModelPrice(
                    model_id=KLING_T2V,
                    unit_price_usd=float(price),
                    price_unit="second",
                    fetched_at=utcnow(),
                )
            )

    yield change
    with runtime.db.transaction() as session:
        session.execute(delete(ModelPrice).where(ModelPrice.model_id == KLING_T2V))


def quote(client: FlaskClient, account: Any, **inputs: Any) -> Any:
    body = {"model": KLING_T2V, "input": {**PROMPT, **inputs}}
    return client.post("/v1/video/quotes", json=body, headers=account.headers)


def test_a_quote_is_honoured_across_a_price_change(
    client: FlaskClient,
    account: conftest.TestAccount,
    price_change: Callable[[str], None],
    runtime: Runtime,
) -> None:
    issued = quote(client, account)
    assert issued.status_code == 201, issued.json
    assert issued.json["estimated_credits"] == 3.5 and issued.json["input"]["duration"] == "5"
    price_change("0.14")  # doubles the price
    assert submit(client, account).json["estimated_credits"] == 7.0
    held = submit(client, account, quote_id=issued.json["quote_id"])
    assert held.status_code == 202 and held.json["estimated_credits"] == 3.5
    done = wait_for_job(client, account, held.json["job_id"])
    assert done["status"] == "completed" and done["credits_used"] == 3.5
    assert done["quote_id"] == issued.json["quote_id"]
    assert job_entries(runtime, done["id"]) == {"hold": [350], "capture": [350]}


def test_an_expired_or_mismatched_quote_is_refused(
    client: FlaskClient,
    account: conftest.TestAccount,
    make_account: Callable[..., conftest.TestAccount],
    runtime: Runtime,
) -> None:
    quote_id = quote(client, account).json["quote_id"]
    other_duration = submit(client, account, quote_id=quote_id, input={**PROMPT, "duration": "10"})
    assert other_duration.status_code == 409
    assert other_duration.json["error"]["code"] == "quote_mismatch"
    stranger = make_account()
    assert submit(client, stranger, quote_id=quote_id).json["error"]["code"] == "quote_mismatch"
    with runtime.db.transaction() as session:
        session.execute(
            update(BindingQuote)
            .where(BindingQuote.id == uuid.UUID(quote_id))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
    expired = submit(client, account, quote_id=quote_id)
    assert expired.status_code == 409 and expired.json["error"]["code"] == "quote_expired"


# ---- operators -------------------------------------------------------------------------


def test_operators_set_budgets_and_scheduling_with_naive_admin(
    test_env: dict[str, str], client: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    ran = naive_admin(
        test_env, "admin", "set-budget", "--account", str(account.id), "--period", "month",
        "--credits", "12.5", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    result = json.loads(ran.stdout)["result"]
    assert (result["scope"], result["period"], result["credits"]) == ("account", "month", 12.5)
    listed = client.get("/v1/budgets", headers=account.headers).json["data"]
    assert [budget["id"] for budget in listed] == [result["id"]]

    ran = naive_admin(
        test_env, "admin", "set-scheduling", "--account", str(account.id),
        "--concurrency-cap", "3", "--weight", "2", "--json",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    with runtime.db.transaction() as session:
        row = session.get_one(Account, account.id)
        assert (row.concurrency_cap, row.scheduling_weight) == (3, 2)
    unknown = naive_admin(test_env, "admin", "set-budget", "--account", str(uuid.uuid4()),
                          "--period", "day", "--credits", "1", "--json")  # fmt: skip
    assert unknown.returncode != 0


def test_create_account_prints_the_key_id_a_key_budget_names(
    test_env: dict[str, str], client: FlaskClient
) -> None:
    """`naive budgets set --key-id ID` needs the key's id: `create-account` prints it with
    the key (nothing else showed it before the key had been charged for a job)."""
    ran = naive_admin(test_env, "admin", "create-account", "--name", "keyed", "--json")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    created = json.loads(ran.stdout)
    headers = {"Authorization": f"Bearer {created['api_key']}"}
    made = client.post(
        "/v1/budgets",
        json={"scope": "key", "key_id": created["key_id"], "period": "day", "credits": 1},
        headers=headers,
    )
    assert made.status_code == 201, made.json
    refused = client.post(
        "/v1/video/generate", json={"model": KLING_T2V, "input": PROMPT}, headers=headers
    )
    assert refused.status_code == 402
    assert refused.json["error"]["budget"]["key_id"] == created["key_id"]

    ran = naive_admin(test_env, "admin", "create-account", "--name", "keyed", "--credits", "1")
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "its id (for --key-id): " in ran.stdout


@pytest.mark.parametrize(
    ("args", "problem"),
    [
        (("--name", "x", "--credits", "-5"), "'--credits': must not be negative."),
        (("--name", "x", "--credits", "0.001"), "no more than 2 decimal places"),
        (("--name", "x", "--credits", "2000000"), "less than or equal to 1000000"),
        (("--name", "  "), "'--name': must be 1 to 200 characters, not blank."),
        (("--name", "n" * 201), "'--name': must be 1 to 200 characters, not blank."),
    ],
)
def test_create_account_refuses_what_it_would_store_wrong(
    test_env: dict[str, str], runtime: Runtime, args: tuple[str, ...], problem: str
) -> None:
    """A negative grant was dropped without a word (an account with 0 credits), a blank
    name kept; a name past the column's 200 characters fails in PostgreSQL."""
    with runtime.db.transaction() as session:
        before = session.scalar(select(func.count()).select_from(Account))
    ran = naive_admin(test_env, "admin", "create-account", *args, "--json")
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert problem in json.loads(ran.stdout)["result"]["message"]
    with runtime.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == before
