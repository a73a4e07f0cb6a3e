"""Request-side access to the runtime, the Celery sender and the caller's account."""

from __future__ import annotations

import uuid

from celery import Celery
from flask import current_app, request

from shared import accounts
from shared.runtime import Runtime


def runtime() -> Runtime:
    return current_app.extensions["naive"]


def celery() -> Celery:
    return current_app.extensions["naive.celery"]


def base_url() -> str:
    return runtime().settings.public_base_url or request.host_url.rstrip("/")


def bearer_key() -> str | None:
    scheme, _, key = request.headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else None


def authenticated_account() -> uuid.UUID:
    """The caller's account id, or `Unauthorized` (rendered as 401 in the error shape)."""
    with runtime().db.transaction() as session:
        return accounts.authenticate(session=session, api_key=bearer_key())
