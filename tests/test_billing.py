"""What a job really cost (issue 13, item 4): the units the provider bills, recorded with the
delivery and priced, shown as the job's `billing` block."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from sqlalchemy import delete, select, update
from werkzeug.test import TestResponse

from services.api.contract import document
from shared import accounts, catalog
from shared.accounts.models import ApiKey
from shared.catalog.models import ModelPrice
from shared.config import Settings
from shared.db import Database, utcnow
from shared.jobs import machine
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import Billing, JobCreate
from shared.ledger import usage
from shared.ledger.models import LedgerEntry
from shared.ledger.schemas import Usage, UsageTotals
from shared.ledger.usage import GroupBy
from shared.providers.base import ProviderResult
from shared.providers.fal_protocol import billable_units
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import KLING_T2V, generate, wait_for_job

WAN = "fal-ai/wan/v2.7/text-to-video"  # built in at 0.10 USD per second
KLING_STANDARD = "fal-ai/kling-video/v3/standard/text-to-video"  # 0.05 USD per second


@pytest.fixture
def db(db: Database) -> Iterator[Database]:
    """conftest's `db`, without a provider's price list (other tests fetch one)."""
    with db.transaction() as session:
        session.execute(delete(ModelPrice))
    yield db
    with db.transaction() as session:
        session.execute(delete(ModelPrice))


def new_account(db: Database) -> uuid.UUID:
    with db.transaction() as session:
        return accounts.create_account(
            session=session, name="billing", credits=Decimal(100)
        ).account_id


def delivered_job(
    db: Database,
    settings: Settings,
    account_id: uuid.UUID,
    units: float | None,
    *,
    model: str = KLING_T2V,
    duration: str = "5",
    api_key_id: uuid.UUID | None = None,
) -> Job:
    """A job the provider delivered reporting `units`, moved there by the service alone."""
    with db.transaction() as session:
        job = jobs.create_job(
            session=session,
            settings=settings,
            catalog=catalog.BUILTIN,
            provider_name="simulator",
            account_id=account_id,
            request=JobCreate(model=model, input={"prompt": "A kite", "duration": duration}),
            idempotency_key=None,
            api_key_id=api_key_id,
        ).job
    video = ProviderResult("https://example.com/v.mp4", "video/mp4", 9, billable_units=units)
    with db.transaction() as session:
        assert jobs.claim_submit(connection=session.connection(), job_id=job.id)
        assert jobs.record_submitted(
            session=session,
            job_id=job.id,
            request_id=uuid.uuid4().hex,
            poll_token="t",
            poll_in=1,
            expected_seconds=2,
        )
        assert jobs.record_delivered(session=session, job_id=job.id, result=video)
        return session.get_one(Job, job.id)


# ---- the provider boundary ------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "units"),
    [
        ("5", 5.0),
        ("5.04", 5.04),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("five", None),
        ("-1", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_the_billable_units_header_is_read_or_left_unknown(
    header: str | None, units: float | None
) -> None:
    assert billable_units(header) == units


# ---- recorded with the delivery, shown on the job --------------------------------------


def test_units_and_their_cost_are_recorded_with_the_delivery(
    db: Database, settings: Settings
) -> None:
    job = delivered_job(db, settings, new_account(db), 5.0)
    assert (job.provider_units, job.provider_cost_usd) == (5.0, 0.35)  # 5 s × $0.07
    assert Billing.of(job).model_dump() == {
        "estimated_credits": 3.5,
        "charged_credits": None,
        "provider_units": 5.0,
        "provider_cost_usd": 0.35,
    }
    with db.transaction() as session:
        assert jobs.settle(session=session, job_id=job.id)
        assert Billing.of(session.get_one(Job, job.id)).charged_credits == 3.5


def test_no_units_reported_means_no_cost(db: Database, settings: Settings) -> None:
    job = delivered_job(db, settings, new_account(db), None)
    assert (job.provider_units, job.provider_cost_usd) == (None, None)


def test_the_cost_is_rounded_to_a_millionth_of_a_dollar(db: Database, settings: Settings) -> None:
    job = delivered_job(db, settings, new_account(db), 5.0412345678)
    assert job.provider_cost_usd == 0.352886  # 5.0412345678 × 0.07 = 0.35288641…


def test_the_cost_uses_the_providers_published_price_over_the_builtin(
    db: Database, settings: Settings
) -> None:
    """fal bills at its own price: the price list it last published (however old) prices the
    units; the built-in catalog's price only when it published none."""
    account_id = new_account(db)
    assert delivered_job(db, settings, account_id, 4.0, model=WAN).provider_cost_usd == 0.4
    with db.transaction() as session:
        session.add(
            ModelPrice(
                model_id=WAN,
                unit_price_usd=0.08,
                price_unit="second",
                fetched_at=utcnow().replace(year=2020),
            )
        )
    assert delivered_job(db, settings, account_id, 4.0, model=WAN).provider_cost_usd == 0.32


# ---- usage, summed from the ledger -------------------------------------------------------

MARCH = (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 4, tzinfo=UTC))
Sums = tuple[str | None, float, int, float, float, int]


def march(day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


def charged_at(
    db: Database,
    settings: Settings,
    account_id: uuid.UUID,
    captured: datetime,
    units: float | None,
    *,
    refunded: datetime | None = None,
    **options: Any,
) -> None:
    """A job delivered with `units` and charged, its capture dated `captured`, and refunded
    at `refunded` if given (the entries are re-dated to build a history)."""
    job = delivered_job(db, settings, account_id, units, **options)
    with db.transaction() as session:
        assert jobs.settle(session=session, job_id=job.id)
        if refunded is not None:
            assert jobs.fail_ingest(session=session, job_id=job.id, reason="disk full")
        for kind, moment in (("capture", captured), ("refund", refunded)):
            session.execute(
                update(LedgerEntry)
                .where(LedgerEntry.job_id == job.id, LedgerEntry.kind == kind)
                .values(created_at=moment)
            )


def ledger_charged(db: Database, account_id: uuid.UUID) -> int:
    """Captures minus refunds in March's range, read from the entries one by one."""
    start, end = MARCH
    with db.transaction() as session:
        entries = session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account_id))
        return sum(
            entry.amount if entry.kind == "capture" else -entry.amount
            for entry in entries
            if entry.kind in ("capture", "refund") and start <= entry.created_at < end
        )


@dataclass(frozen=True)
class History:
    account_id: uuid.UUID
    key_one: uuid.UUID
    key_two: uuid.UUID


@pytest.fixture
def history(db: Database, settings: Settings) -> History:
    """An account's March. Key 1: Kling pro 5 s on the 1st (5 units, $0.35, 3.5 credits) and
    3 s on the 2nd at midnight (no units reported, 2.1 credits). Key 2: Kling standard 4 s
    on the 2nd at 23:59:59 (4 units, $0.20, 2 credits). No recorded key: a job charged in
    February, refunded on the 3rd. Left out: a charge on the 4th (the range's end), a
    failed job (released) and another account's charge."""
    account_id = new_account(db)
    with db.transaction() as session:
        keys = [accounts.create_api_key(session=session, account_id=account_id) for _ in "12"]
        one, two = (
            session.scalars(
                select(ApiKey.id).where(ApiKey.key_hash == accounts.hash_key(key))
            ).one()
            for key in keys
        )
    charged_at(db, settings, account_id, march(1, 10), 5.0, api_key_id=one)
    charged_at(db, settings, account_id, march(2), None, duration="3", api_key_id=one)
    charged_at(
        db, settings, account_id, march(2, 23, 59, 59), 4.0, model=KLING_STANDARD,
        duration="4", api_key_id=two,
    )  # fmt: skip
    february = datetime(2026, 2, 28, 23, tzinfo=UTC)
    charged_at(db, settings, account_id, february, 5.0, refunded=march(3, 1))
    charged_at(db, settings, account_id, march(4), 5.0, api_key_id=one)
    failed = delivered_job(db, settings, account_id, 5.0)
    with db.transaction() as session:
        failure = machine.internal_error("Boom")
        assert jobs.fail_on_error(session=session, job_id=failed.id, kind=failure.code)
    charged_at(db, settings, new_account(db), march(1, 10), 5.0)
    return History(account_id, one, two)


def report(db: Database, history: History, group_by: GroupBy) -> tuple[list[Sums], Sums]:
    """The March usage by `group_by` as the wire shows it: each row's sums, and the totals'
    (after checking that they sum to the ledger)."""
    with db.transaction() as session:
        found = usage.usage(
            session=session,
            account_id=history.account_id,
            start=MARCH[0],
            end=MARCH[1],
            group_by=group_by,
        )
    assert found.totals.charged == ledger_charged(db, history.account_id) == 410
    wire = Usage.of(found, 0.5)
    rows = [(row.group, *_sums(row)) for row in wire.rows]
    return rows, ("total", *_sums(wire.totals))


def _sums(row: UsageTotals) -> tuple[float, int, float, float, int]:
    return (
        row.charged_credits,
        row.jobs,
        row.provider_units,
        row.provider_cost_usd,
        row.jobs_without_units,
    )


TOTALS: Sums = ("total", 4.1, 3, 9.0, 0.55, 1)


def test_usage_by_model_sums_to_the_ledger(db: Database, history: History) -> None:
    assert report(db, history, "model") == (
        [
            (KLING_T2V, 2.1, 2, 5.0, 0.35, 1),  # 3.5 + 2.1 − the February job's refund
            (KLING_STANDARD, 2.0, 1, 4.0, 0.2, 0),
        ],
        TOTALS,
    )


def test_usage_by_day_is_by_the_ledger_entrys_utc_day(db: Database, history: History) -> None:
    assert report(db, history, "day") == (
        [
            ("2026-03-01", 3.5, 1, 5.0, 0.35, 0),
            ("2026-03-02", 4.1, 2, 4.0, 0.2, 1),
            ("2026-03-03", -3.5, 0, 0.0, 0.0, 0),  # a refund: no job charged that day
        ],
        TOTALS,
    )


def test_usage_by_key_names_the_submitting_key(db: Database, history: History) -> None:
    rows, totals = report(db, history, "key")
    assert sorted(rows, key=str) == sorted(
        [
            (str(history.key_one), 5.6, 2, 5.0, 0.35, 1),
            (str(history.key_two), 2.0, 1, 4.0, 0.2, 0),
            (None, -3.5, 0, 0.0, 0.0, 0),
        ],
        key=str,
    )
    assert rows[-1][0] is None  # jobs without a recorded key come last
    assert totals == TOTALS


def test_an_empty_range_is_all_zeros(db: Database) -> None:
    with db.transaction() as session:
        found = usage.usage(
            session=session,
            account_id=new_account(db),
            start=MARCH[0],
            end=MARCH[1],
            group_by="model",
        )
    assert found.rows == [] and found.totals.charged == 0


# ---- the API -----------------------------------------------------------------------------


def second_key(runtime: Runtime, account: conftest.TestAccount) -> conftest.TestAccount:
    """Another API key of the same account."""
    with runtime.db.transaction() as session:
        return conftest.TestAccount(
            account.id, accounts.create_api_key(session=session, account_id=account.id)
        )


def key_id(runtime: Runtime, account: conftest.TestAccount) -> uuid.UUID:
    with runtime.db.transaction() as session:
        return session.scalars(
            select(ApiKey.id).where(ApiKey.key_hash == accounts.hash_key(account.key))
        ).one()


def test_a_job_records_the_key_that_submitted_it(
    idle_app: Flask, runtime: Runtime, account: conftest.TestAccount
) -> None:
    other = second_key(runtime, account)
    client = idle_app.test_client()
    made = {key.key: generate(client, key, "A kite")["job_id"] for key in (account, other)}
    with runtime.db.transaction() as session:
        for key, job_id in made.items():
            job = session.get_one(Job, uuid.UUID(job_id))
            assert job.api_key_id == key_id(runtime, conftest.TestAccount(account.id, key))


def documented(response: TestResponse, path: str) -> dict[str, Any]:
    """The answer's JSON, checked against the schema `/openapi.json` gives for it."""
    served = document()
    replies = served["paths"][path]["get"]["responses"]
    assert str(response.status_code) in replies, response.json
    schema = replies[str(response.status_code)]["content"]["application/json"]["schema"]
    validator = Draft202012Validator({**schema, "components": served["components"]})
    assert [error.message for error in validator.iter_errors(response.json)] == []
    return dict(response.json)


def csv_rows(response: TestResponse) -> list[dict[str, str]]:
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    documented_types = document()["paths"]["/v1/usage"]["get"]["responses"]["200"]["content"]
    assert "text/csv" in documented_types
    assert response.headers["Content-Disposition"].startswith("attachment; filename=")
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))


def test_jobs_show_their_billing_and_the_usage_export_sums_to_the_ledger(
    client: FlaskClient, runtime: Runtime, account: conftest.TestAccount
) -> None:
    """Through the API and the worker (the simulator bills seconds of output): each job's
    billing block, then the export in JSON and CSV, by model, day and key, each summing to
    the ledger's captures minus refunds in the range."""
    start = utcnow() - timedelta(hours=1)
    other = second_key(runtime, account)
    made = [
        generate(client, account, "A kite [sim latency=0.5]", duration=5)["job_id"],
        generate(client, other, "A kite [sim latency=0.5]", duration=3)["job_id"],
    ]
    finished = [wait_for_job(client, account, job_id) for job_id in made]
    assert [job["billing"] for job in finished] == [
        {
            "estimated_credits": 3.5,
            "charged_credits": 3.5,
            "provider_units": 5.0,
            "provider_cost_usd": 0.35,
        },
        {
            "estimated_credits": 2.1,
            "charged_credits": 2.1,
            "provider_units": 3.0,
            "provider_cost_usd": 0.21,
        },
    ]
    end = utcnow() + timedelta(hours=1)
    with runtime.db.transaction() as session:
        entries = session.scalars(select(LedgerEntry).where(LedgerEntry.account_id == account.id))
        ledger = sum(
            entry.amount if entry.kind == "capture" else -entry.amount
            for entry in entries
            if entry.kind in ("capture", "refund") and start <= entry.created_at < end
        )
    assert ledger == 560
    query = {"from": start.isoformat(), "to": end.isoformat().replace("+00:00", "Z")}

    expected_groups = {
        "model": [KLING_T2V],
        "day": sorted({job["completed_at"][:10] for job in finished}),
        "key": sorted(str(key_id(runtime, key)) for key in (account, other)),
    }
    for group_by, groups in expected_groups.items():
        answer = documented(
            client.get("/v1/usage", query_string={**query, "group_by": group_by},
                       headers=account.headers),
            "/v1/usage",
        )  # fmt: skip
        assert answer["group_by"] == group_by
        totals = answer["totals"]
        assert totals == {
            "charged_credits": 5.6,
            "jobs": 2,
            "provider_units": 8.0,
            "provider_cost_usd": 0.56,
            "jobs_without_units": 0,
        }
        assert round(sum(row["charged_credits"] for row in answer["rows"]) * 100) == ledger
        assert sorted(row["group"] for row in answer["rows"]) == groups
        if group_by == "key":
            assert {row["key_prefix"] for row in answer["rows"]} == {
                account.key[:12],
                other.key[:12],
            }

        as_csv = client.get(
            "/v1/usage", query_string={**query, "group_by": group_by, "format": "csv"},
            headers=account.headers,
        )  # fmt: skip
        by_accept = client.get(
            "/v1/usage", query_string={**query, "group_by": group_by},
            headers={**account.headers, "Accept": "text/csv"},
        )  # fmt: skip
        assert as_csv.get_data() == by_accept.get_data()
        lines = csv_rows(as_csv)
        *rows, total = lines
        column = "key_id" if group_by == "key" else group_by
        assert sorted(row[column] for row in rows) == groups
        assert total[column] == "total"
        assert Decimal(total["charged_credits"]) * 100 == ledger
        assert sum(Decimal(row["charged_credits"]) for row in rows) * 100 == ledger
        assert total["provider_cost_usd"] == "0.56" and total["provider_units"] == "8.0"


def test_usage_defaults_to_the_current_month(
    client: FlaskClient, account: conftest.TestAccount
) -> None:
    answer = documented(client.get("/v1/usage", headers=account.headers), "/v1/usage")
    start, end = usage.month_of(utcnow())
    assert (answer["from"], answer["to"]) in {
        (start.isoformat().replace("+00:00", "Z"), end.isoformat().replace("+00:00", "Z")),
        (start.isoformat(), end.isoformat()),
    }
    assert answer["group_by"] == "model"
    assert answer["rows"] == [] and answer["totals"]["charged_credits"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("from=2026-03-02&to=2026-03-01", "to"),
        ("from=0001-01-01T00:00%2B05:00", "from"),
        ("group_by=week", "group_by"),
        ("format=xml", "format"),
    ],
)
def test_a_bad_usage_query_is_invalid_input_naming_the_field(
    client: FlaskClient, account: conftest.TestAccount, query: str, field: str
) -> None:
    refused = documented(client.get(f"/v1/usage?{query}", headers=account.headers), "/v1/usage")
    assert refused["error"]["code"] == "invalid_input"
    assert list(refused["error"]["fields"]) == [field]


@pytest.mark.parametrize(
    ("moment", "month"),
    [
        (datetime(2026, 3, 15, 12, tzinfo=UTC), (datetime(2026, 3, 1), datetime(2026, 4, 1))),
        (datetime(2026, 12, 31, 23, tzinfo=UTC), (datetime(2026, 12, 1), datetime(2027, 1, 1))),
        (datetime(2026, 3, 1, tzinfo=UTC), (datetime(2026, 3, 1), datetime(2026, 4, 1))),
    ],
)
def test_the_default_range_is_the_utc_month(moment: datetime, month: tuple[datetime, ...]) -> None:
    assert usage.month_of(moment) == tuple(day.replace(tzinfo=UTC) for day in month)
