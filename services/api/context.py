"""Request-side access to the runtime, the Celery sender and the caller's account."""

from __future__ import annotations

import logging
import uuid

from celery import Celery
from flask import current_app, g, request
from sqlalchemy.orm import Session

from shared import accounts, logs
from shared.catalog import Catalog
from shared.runtime import Runtime

log = logging.getLogger(__name__)


def runtime() -> Runtime:
    return current_app.extensions["naive"]


def celery() -> Celery:
    return current_app.extensions["naive.celery"]


def base_url() -> str:
    return runtime().settings.public_base_url or request.host_url.rstrip("/")


def bearer_key() -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def authenticated_account(session: Session | None = None) -> uuid.UUID:
    """The caller's account id, or `Unauthorized` (rendered as 401 in the error shape).

    Given a session, the check joins that transaction (one round trip fewer per submit)."""
    if session is None:
        with runtime().db.transaction() as own:
            caller = accounts.authenticate(session=own, api_key=bearer_key())
    else:
        caller = accounts.authenticate(session=session, api_key=bearer_key())
    logs.bind(account_id=caller.account_id)
    g.authenticated = True  # the rate limiter lets this key past an address's failure block
    g.api_key_id = caller.key_id
    return caller.account_id


def api_key_id() -> uuid.UUID:
    """The id of the key `authenticated_account` accepted (jobs record it: budgets per
    key, usage by key)."""
    key_id: uuid.UUID = g.api_key_id
    return key_id


def catalog(session: Session | None = None) -> Catalog:
    return current_app.extensions["naive.catalog"].get(session)
