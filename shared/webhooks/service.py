"""Customer webhook subscriptions: create, list, read, change and delete an account's.

Functions take the session, flush, and leave the commit to the caller. A URL is checked
against the same address policy as image URLs (no private or loopback targets unless the
operator allows them), when it is set and again when it changes.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from typing import get_args
from urllib.parse import urlparse

from sqlalchemy import select
from sqlalchemy.orm import Session

from shared import accounts
from shared.errors import InvalidInput, NotFound, echo
from shared.media.url_policy import UnsafeUrl, check_fetchable
from shared.webhooks.models import WebhookSubscription
from shared.webhooks.schemas import EventType, WebhookCreate, WebhookUpdate

SECRET_PREFIX = "whsec_"
# Standard Webhooks asks for keys of 24 to 64 random bytes.
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def check_url(url: str, *, allow_private: bool, field: str = "url") -> None:
    """`InvalidInput` naming `field` unless `url` is an http(s) URL the address policy
    allows, without credentials (they would be stored and shown back as part of the URL;
    the signature is what authenticates a delivery)."""
    try:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https"):
            raise UnsafeUrl("must be an https or http URL")
        if "@" in parsed.netloc:
            raise UnsafeUrl("must not contain a user name or password")
        check_fetchable(url, allow_private=allow_private)
    except (UnsafeUrl, ValueError) as exc:
        raise InvalidInput(f"`{field}` {exc}.", fields={field: str(exc)}) from None


def create(
    *, session: Session, account_id: uuid.UUID, spec: WebhookCreate, allow_private: bool
) -> WebhookSubscription:
    check_url(spec.url, allow_private=allow_private)
    row = WebhookSubscription(
        account_id=account_id,
        url=spec.url,
        events=list(dict.fromkeys(spec.events)),
        description=spec.description,
        secret=new_secret(),
    )
    session.add(row)
    session.flush()
    return row


def create_for_job(
    *,
    session: Session,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    url: str,
    events: list[EventType] | None,
) -> WebhookSubscription:
    """The job's own webhook: its events (every type unless `events` names some) to `url`,
    which the caller has checked (`check_url`), signed with a secret of its own."""
    row = WebhookSubscription(
        account_id=account_id,
        job_id=job_id,
        url=url,
        events=list(dict.fromkeys(events or get_args(EventType))),
        secret=new_secret(),
    )
    session.add(row)
    session.flush()
    return row


def secret_for_job(*, session: Session, job_id: uuid.UUID) -> str | None:
    """The secret of the job's own webhook, if it has one."""
    return session.scalar(
        select(WebhookSubscription.secret).where(WebhookSubscription.job_id == job_id)
    )


def list_for(*, session: Session, account_id: uuid.UUID) -> list[WebhookSubscription]:
    """The account's subscriptions, oldest first."""
    query = (
        select(WebhookSubscription)
        .where(WebhookSubscription.account_id == account_id, WebhookSubscription.job_id.is_(None))
        .order_by(WebhookSubscription.created_at, WebhookSubscription.id)
    )
    return list(session.scalars(query))


def get(*, session: Session, account_id: uuid.UUID, webhook_id: str) -> WebhookSubscription:
    row = accounts.get_owned(
        session=session,
        model=WebhookSubscription,
        account_id=account_id,
        raw_id=webhook_id,
        noun="webhook",
    )
    if row.job_id is not None:  # a job's own webhook is not a subscription
        raise NotFound(f"No webhook {echo(webhook_id)}.")
    return row


def update(
    *,
    session: Session,
    account_id: uuid.UUID,
    webhook_id: str,
    change: WebhookUpdate,
    allow_private: bool,
) -> WebhookSubscription:
    row = get(session=session, account_id=account_id, webhook_id=webhook_id)
    given = change.model_fields_set
    for name in ("url", "events", "status"):
        if name in given and getattr(change, name) is None:
            raise InvalidInput(f"`{name}` cannot be null.", fields={name: "cannot be null"})
    if change.url is not None:
        check_url(change.url, allow_private=allow_private)
        row.url = change.url
    if change.events is not None:
        row.events = list(dict.fromkeys(change.events))
    if "description" in given:
        row.description = change.description
    if change.status == "enabled":
        row.disabled_at = row.disabled_reason = row.failing_since = None
    session.flush()
    return row


def delete(*, session: Session, account_id: uuid.UUID, webhook_id: str) -> None:
    session.delete(get(session=session, account_id=account_id, webhook_id=webhook_id))
    session.flush()
