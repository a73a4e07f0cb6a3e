"""What a job really cost (issue 13, item 4): the units the provider bills, recorded with the
delivery and priced, shown as the job's `billing` block."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import delete, select

from shared import accounts, catalog
from shared.accounts.models import ApiKey
from shared.catalog.models import ModelPrice
from shared.config import Settings
from shared.db import Database, utcnow
from shared.jobs import service as jobs
from shared.jobs.models import Job
from shared.jobs.schemas import Billing, JobCreate
from shared.migrate import upgrade
from shared.providers.base import ProviderResult
from shared.providers.fal_protocol import billable_units
from shared.runtime import Runtime
from tests import conftest
from tests.helpers import KLING_T2V, generate

WAN = "fal-ai/wan/v2.7/text-to-video"  # built in at 0.10 USD per second


@pytest.fixture(params=["postgresql", "sqlite"])
def db(request: pytest.FixtureRequest, runtime: Runtime, tmp_path: Path) -> Iterator[Database]:
    """The test run's PostgreSQL (without a provider's price list: other tests fetch one),
    or a fresh SQLite file (the embedded default)."""
    if request.param == "postgresql":
        with runtime.db.transaction() as session:
            session.execute(delete(ModelPrice))
        yield runtime.db
        with runtime.db.transaction() as session:
            session.execute(delete(ModelPrice))
        return
    url = f"sqlite:///{tmp_path / 'naive.db'}"
    upgrade(url)
    database = Database(url)
    yield database
    database.dispose()


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
        ).job
    video = ProviderResult("https://example.com/v.mp4", "video/mp4", 9, billable_units=units)
    with db.transaction() as session:
        assert jobs.claim_submit(session=session, job_id=job.id)
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
