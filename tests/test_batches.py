"""Batches on the real stack: one aggregate hold, one job per item, partial failure, cancel."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import select

from shared.ledger.models import LedgerEntry
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import KLING_T2V, balance
from tests.waiting import wait_for


def item(prompt: str, **metadata: Any) -> dict[str, Any]:
    return {"model": KLING_T2V, "input": {"prompt": prompt, "duration": "5"}, "metadata": metadata}


def post_batch(client: FlaskClient, account: Any, items: list[Any], key: str | None = None) -> Any:
    headers = {**account.headers, **({"Idempotency-Key": key} if key else {})}
    return client.post("/v1/video/batches", json={"items": items}, headers=headers)


def entries(runtime: Runtime, account: Any) -> list[tuple[str, int, uuid.UUID | None, bool]]:
    with runtime.db.transaction() as session:
        rows = session.execute(
            select(
                LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.job_id, LedgerEntry.batch_id
            ).where(LedgerEntry.account_id == account.id, LedgerEntry.kind != "topup")
        )
        return [(kind, amount, job, batch is not None) for kind, amount, job, batch in rows]


def test_a_batch_with_one_failing_item_completes_with_errors(
    client: FlaskClient, account: conftest.TestAccount, runtime: Runtime
) -> None:
    items = [item(f"Shot {n} [sim latency=0.5]", n=n) for n in range(4)]
    items.insert(2, item("Shot X [sim latency=0.5 fail='lens cap on']", n="x"))
    accepted = post_batch(client, account, items)
    assert accepted.status_code == 202, accepted.json
    body = accepted.json
    assert body["item_count"] == 5 and body["estimated_credits"] == 17.5
    assert len(body["job_ids"]) == 5
    assert balance(runtime, account).held == 1750

    def ended() -> dict[str, Any] | None:
        shown = client.get(f"/v1/video/batches/{body['batch_id']}", headers=account.headers)
        return shown.json if shown.json["status"] != "processing" else None

    batch = wait_for(ended, timeout=90, message="the batch ends")
    assert batch["status"] == "completed_with_errors"
    assert batch["counts"] == {
        "queued": 0,
        "processing": 0,
        "completed": 4,
        "failed": 1,
        "cancelled": 0,
    }
    assert batch["charged_credits"] == 14.0 and batch["completed_at"] is not None
    assert [job["id"] for job in batch["items"]] == body["job_ids"]  # the request's order
    assert [job["metadata"]["n"] for job in batch["items"]] == [0, 1, "x", 2, 3]
    failed = batch["items"][2]
    assert failed["status"] == "failed" and failed["batch_id"] == body["batch_id"]

    moves = entries(runtime, account)
    assert [m for m in moves if m[0] == "hold"] == [("hold", 1750, None, True)]
    captures = [m for m in moves if m[0] == "capture"]
    releases = [m for m in moves if m[0] == "release"]
    assert len(captures) == 4 and all(amount == 350 for _, amount, _, _ in captures)
    assert releases == [("release", 350, uuid.UUID(failed["id"]), False)]
    totals = balance(runtime, account)
    assert (totals.held, totals.balance) == (0, 10000 - 1400)
    # The customer's ledger says which batch its one hold is for.
    ledger = client.get("/v1/credits", headers=account.headers).json["entries"]
    holds = [entry for entry in ledger if entry["kind"] == "hold"]
    assert [(hold["job_id"], hold["batch_id"]) for hold in holds] == [(None, body["batch_id"])]


def test_cancelling_a_batch_releases_the_items_not_started(
    idle_app: Any, account: conftest.TestAccount, runtime: Runtime
) -> None:
    idle = idle_app.test_client()  # nothing runs its jobs: every item stays queued
    accepted = post_batch(idle, account, [item("One"), item("Two"), item("Three")]).json
    cancelled = idle.delete(f"/v1/video/batches/{accepted['batch_id']}", headers=account.headers)
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "cancelled" and cancelled.json["counts"]["cancelled"] == 3
    assert balance(runtime, account).held == 0
    assert sorted(kind for kind, *_ in entries(runtime, account)) == ["hold"] + ["release"] * 3


def test_a_batch_is_all_or_nothing_and_idempotent(
    client: FlaskClient,
    idle_app: Any,
    make_account: Callable[..., conftest.TestAccount],
    runtime: Runtime,
) -> None:
    idle = idle_app.test_client()
    account = make_account("10")  # two items fit, three do not
    refused = post_batch(idle, account, [item("A"), item("B"), item("C")])
    assert refused.status_code == 402 and refused.json["error"]["code"] == "insufficient_credits"
    assert refused.json["error"]["message"].startswith("This batch needs 10.5 credits")
    bad = post_batch(idle, account, [item("A"), {"model": KLING_T2V, "input": {"duration": "7"}}])
    assert bad.status_code == 422
    assert set(bad.json["error"]["fields"]) >= {"items[1].input.prompt"}
    assert entries(runtime, account) == []

    first = post_batch(idle, account, [item("A"), item("B")], key="batch-1")
    again = post_batch(idle, account, [item("A"), item("B")], key="batch-1")
    assert first.status_code == again.status_code == 202
    assert again.json["batch_id"] == first.json["batch_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    other = post_batch(idle, account, [item("A")], key="batch-1")
    assert other.status_code == 409
    assert other.json["error"]["batch_id"] == first.json["batch_id"]
    too_many = post_batch(idle, account, [item("A")] * 101)
    assert too_many.status_code == 422
    stranger = make_account()
    missing = idle.get(f"/v1/video/batches/{first.json['batch_id']}", headers=stranger.headers)
    assert missing.status_code == 404
