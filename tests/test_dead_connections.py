"""A pooled database connection the server has ended is replaced, not served to a request.

The API no longer pings each connection it takes from the pool (`pool_pre_ping` cost a
round trip per transaction); a connection whose backend was terminated is noticed at
checkout without a round trip and the pool connects once more in its place.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest
from flask import Flask

from services.api.app import create_app
from shared import accounts
from shared.config import load_settings
from tests.helpers import KLING_T2V
from tests.stack import PG_ADMIN_URL, scratch_database

BODY = {"model": KLING_T2V, "input": {"prompt": "After the restart [sim latency=60]"}}


@pytest.fixture
def private_app(test_env: dict[str, str]) -> Iterator[Flask]:
    """The API on a database of its own (its backends may be terminated), sending to a
    queue no worker reads."""
    with scratch_database() as url:
        app = create_app(
            load_settings(
                {
                    **test_env,
                    "DATABASE_URL": url,
                    "CELERY_QUEUE": f"{test_env['CELERY_QUEUE']}-idle",
                }
            )
        )
        yield app
        app.extensions["naive"].db.dispose()


def _terminate_backends(database_url: str) -> int:
    """End every server process of the database, waiting until each is gone."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE datname = %s",
            (name,),
        ).fetchall()
    return sum(1 for (done,) in ended if done)


def test_submits_succeed_after_the_database_ended_every_pooled_connection(
    private_app: Flask,
) -> None:
    db = private_app.extensions["naive"].db
    with db.transaction() as session:
        key = accounts.create_account(session=session, name="t", credits=Decimal(100)).api_key
    headers = {"Authorization": f"Bearer {key}"}
    client = private_app.test_client()
    first = client.post("/v1/video/generate", json=BODY, headers=headers)
    assert first.status_code == 202

    assert _terminate_backends(db.url) >= 1
    again = client.post("/v1/video/generate", json=BODY, headers=headers)
    assert again.status_code == 202, again.json
    listed = client.get("/v1/jobs", headers=headers).json
    assert [job["id"] for job in listed["data"]] == [again.json["job_id"], first.json["job_id"]]
