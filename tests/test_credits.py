"""Credits: hold at submit, 402 without a trace, no overdraw under concurrency, idempotency."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import func, select

from shared.jobs.models import Job
from shared.ledger import service as ledger
from shared.ledger.models import LedgerEntry
from tests.helpers import KLING_T2V, balance, generate, job_entries

BODY = {"model": KLING_T2V, "input": {"prompt": "A lighthouse at dusk", "duration": "5"}}


def _count_jobs(runtime, account) -> int:
    with runtime.db.transaction() as session:
        return session.scalar(select(func.count()).where(Job.account_id == account.id))


def test_insufficient_credits_stores_nothing(client, make_account, runtime):
    poor = make_account("3.49")
    response = client.post("/v1/video/generate", json=BODY, headers=poor.headers)
    assert response.status_code == 402
    error = response.json["error"]
    assert error["code"] == "insufficient_credits"
    assert error["estimated_credits"] == 3.5
    assert error["available_credits"] == 3.49
    assert _count_jobs(runtime, poor) == 0
    with runtime.db.transaction() as session:
        kinds = session.scalars(select(LedgerEntry.kind).where(LedgerEntry.account_id == poor.id))
        assert list(kinds) == ["topup"]


def test_submit_holds_the_estimate_until_completion(client, account, runtime):
    job = generate(client, account, "A lighthouse [sim latency=5]")
    held = balance(runtime, account)
    assert (held.balance, held.held, held.available) == (10000, 350, 9650)
    credits = client.get("/v1/credits", headers=account.headers).json
    assert (credits["balance"], credits["held"], credits["available"]) == (100.0, 3.5, 96.5)
    assert credits["credit_value_usd"] == 0.5
    assert [e["kind"] for e in credits["entries"]] == ["hold", "topup"]
    assert job_entries(runtime, job["job_id"]) == {"hold": [350]}


def test_forty_concurrent_submits_with_credits_for_ten_accept_exactly_ten(
    live_api, make_account, runtime
):
    funded = make_account("35")  # ten jobs at 3.5
    start = threading.Barrier(40)

    def submit(i: int) -> int:
        body = {"model": KLING_T2V, "input": {"prompt": f"Race {i} [sim latency=1]"}}
        with httpx.Client(base_url=live_api, headers=funded.headers, timeout=60) as http:
            start.wait()
            return http.post("/v1/video/generate", json=body).status_code

    with ThreadPoolExecutor(max_workers=40) as pool:
        codes = list(pool.map(submit, range(40)))

    assert codes.count(202) == 10
    assert codes.count(402) == 30
    assert _count_jobs(runtime, funded) == 10
    totals = balance(runtime, funded)
    assert totals.available == 0
    assert totals.held == 3500


def test_idempotency_key_replays_the_first_job(client, account, runtime):
    headers = {**account.headers, "Idempotency-Key": "intent-42"}
    first = client.post("/v1/video/generate", json=BODY, headers=headers)
    again = client.post("/v1/video/generate", json=BODY, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json["job_id"] == first.json["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _count_jobs(runtime, account) == 1
    assert balance(runtime, account).held == 350


def test_idempotency_key_with_another_body_is_refused(client, account, runtime):
    headers = {**account.headers, "Idempotency-Key": "intent-43"}
    first = client.post("/v1/video/generate", json=BODY, headers=headers)
    other = {**BODY, "input": {"prompt": "Something else"}}
    refused = client.post("/v1/video/generate", json=other, headers=headers)
    assert refused.status_code == 409
    assert refused.json["error"]["code"] == "idempotency_conflict"
    assert refused.json["error"]["job_id"] == first.json["job_id"]
    assert _count_jobs(runtime, account) == 1


def test_the_same_idempotency_key_is_separate_per_account(client, make_account):
    one, two = make_account(), make_account()
    a = client.post(
        "/v1/video/generate", json=BODY, headers={**one.headers, "Idempotency-Key": "k"}
    )
    b = client.post(
        "/v1/video/generate", json=BODY, headers={**two.headers, "Idempotency-Key": "k"}
    )
    assert a.json["job_id"] != b.json["job_id"]


def test_pricing_reproduces_the_spec_example(client, account):
    response = client.get(
        f"/v1/video/pricing?model={KLING_T2V}&duration=5", headers=account.headers
    )
    assert response.json == {
        "model": KLING_T2V,
        "duration": 5,
        "estimated_credits": 3.5,
        "unit_price_usd": 0.07,
        "unit": "second",
        "credit_value_usd": 0.5,
    }


def test_pricing_per_video_takes_no_duration_as_generate_takes_none(client, account):
    path = "/v1/video/pricing?model=fal-ai/minimax-video/video-01-live"
    response = client.get(path, headers=account.headers)
    assert response.json["estimated_credits"] == 5.0  # 0.50 per video × 5 / 0.50
    assert response.json["unit"] == "video"
    assert response.json["duration"] == 6
    for query, name in (("&duration=10", "duration"), ("&dur=6", "dur")):
        refused = client.get(path + query, headers=account.headers)
        assert refused.status_code == 422
        assert refused.json["error"]["fields"] == {name: "is not a parameter of this model"}


def test_a_duration_the_model_refuses_is_named_as_the_query_parameter(client, account):
    response = client.get(
        "/v1/video/pricing?model=fal-ai/kling-video/v3/pro/text-to-video&duration=99",
        headers=account.headers,
    )
    assert response.status_code == 422
    assert list(response.json["error"]["fields"]) == ["duration"]
    assert response.json["error"]["fields"]["duration"].startswith("must be one of '3'")
    # the message names the value refused, not the parameter, which the model does take
    assert response.json["error"]["message"] == (
        "fal-ai/kling-video/v3/pro/text-to-video does not take `duration=99`."
    )


def test_ledger_entries_are_paged_newest_first_by_cursor(idle_app, account, runtime):
    """`GET /v1/credits` pages its entries as `GET /v1/jobs` pages jobs: every entry once,
    newest first, while the balances on each page are the whole ledger's."""
    client = idle_app.test_client()
    with runtime.db.transaction() as session:
        for n in range(4):
            ledger.top_up(session=session, account_id=account.id, credits=Decimal(1), note=f"{n}")
    everything = client.get("/v1/credits", headers=account.headers).json
    assert len(everything["entries"]) == 5
    assert (everything["has_more"], everything["next_cursor"]) == (False, None)
    newest_first = [entry["id"] for entry in everything["entries"]]

    seen, path, pages = [], "/v1/credits?limit=2", []
    while path:
        page = client.get(path, headers=account.headers).json
        assert page["balance"] == everything["balance"] == 104
        seen += [entry["id"] for entry in page["entries"]]
        pages.append(len(page["entries"]))
        assert page["has_more"] is (page["next_cursor"] is not None)
        path = page["next_cursor"] and f"/v1/credits?limit=2&cursor={page['next_cursor']}"
    assert (seen, pages) == (newest_first, [2, 2, 1])
    times = [entry["created_at"] for entry in everything["entries"]]
    assert times == sorted(times, reverse=True)


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "not-a-cursor",
        # a cursor whose time has no zone
        "MjAyMC0wMS0wMXwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA=",
    ],
)
def test_a_bad_ledger_cursor_is_invalid_input(idle_app, account, cursor):
    response = idle_app.test_client().get(f"/v1/credits?cursor={cursor}", headers=account.headers)
    assert response.status_code == 422
    assert response.json["error"]["fields"] == {"cursor": "use next_cursor as given"}
