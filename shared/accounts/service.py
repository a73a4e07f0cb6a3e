"""Accounts and API keys. Keys are `nv_sk_…`, shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from shared.accounts.models import Account, ApiKey
from shared.batches.models import Batch
from shared.budgets.models import Budget
from shared.db import Prepared
from shared.errors import NotFound, Unauthorized
from shared.jobs.models import Job
from shared.ledger import service as ledger
from shared.media.models import MediaAsset
from shared.webhooks.models import WebhookSubscription

# the rows an account owns
Owned = TypeVar("Owned", Job, MediaAsset, WebhookSubscription, Batch, Budget)

KEY_PREFIX = "nv_sk_"


@dataclass(frozen=True)
class Caller:
    """Who made a request: the account and the key it used."""

    account_id: uuid.UUID
    key_id: uuid.UUID


@dataclass(frozen=True)
class NewAccount:
    account_id: uuid.UUID
    api_key: str
    key_id: uuid.UUID  # what a key's budget names (`naive budgets set --key-id`)


def hash_key(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def create_account(*, session: Session, name: str, credits: Decimal) -> NewAccount:
    """Create an account with its first key and a starting grant of credits."""
    account = Account(name=name)
    session.add(account)
    session.flush()
    if credits > 0:
        ledger.top_up(session=session, account_id=account.id, credits=credits, note="grant")
    api_key, key_id = _new_key(session=session, account_id=account.id)
    return NewAccount(account.id, api_key, key_id)


def set_scheduling(
    *,
    session: Session,
    account_id: uuid.UUID,
    concurrency_cap: int | None,
    weight: int | None = None,
) -> Account:
    """Set the account's own concurrency cap (None: none) and, if given, its weight in the
    fair scheduler (`shared.jobs.admission`); `NotFound` for an unknown account."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account {account_id}.")
    if concurrency_cap is not None and concurrency_cap < 1:
        raise ValueError("a concurrency cap is at least 1")
    if weight is not None and weight < 1:
        raise ValueError("a weight is at least 1")
    account.concurrency_cap = concurrency_cap
    if weight is not None:
        account.scheduling_weight = weight
    session.flush()
    return account


def create_api_key(*, session: Session, account_id: uuid.UUID) -> str:
    return _new_key(session=session, account_id=account_id)[0]


def _new_key(*, session: Session, account_id: uuid.UUID) -> tuple[str, uuid.UUID]:
    """A new key of the account: the key itself (shown once) and its id."""
    api_key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(account_id=account_id, key_hash=hash_key(api_key), display_prefix=api_key[:12])
    session.add(row)
    session.flush()
    return api_key, row.id


_KEYS = ApiKey.__table__
# Compiled once and run on the driver's connection: every request runs it.
_ACCOUNT_OF_KEY = Prepared(
    select(_KEYS.c.account_id, _KEYS.c.id).where(
        _KEYS.c.key_hash == bindparam("key_hash"), _KEYS.c.revoked_at.is_(None)
    )
)


def authenticate(*, session: Session, api_key: str | None) -> Caller:
    """The account the key belongs to, and the key's id; or `Unauthorized`."""
    if not api_key or not api_key.startswith(KEY_PREFIX):
        raise Unauthorized("Send 'Authorization: Bearer nv_sk_…' with a valid API key.")
    found = _ACCOUNT_OF_KEY.rows(session.connection(), {"key_hash": hash_key(api_key)})
    if not found:
        raise Unauthorized("The API key is not valid or has been revoked.")
    account_id, key_id = found[0]
    return Caller(account_id, key_id)


def get_owned(
    *, session: Session, model: type[Owned], account_id: uuid.UUID, raw_id: str, noun: str
) -> Owned:
    """The account's row by id; another account's row is not found, never forbidden."""
    try:
        key = uuid.UUID(raw_id)
    except ValueError:
        raise NotFound(f"No {noun} {raw_id!r}.") from None
    row = session.get(model, key)
    if row is None or row.account_id != account_id:
        raise NotFound(f"No {noun} {raw_id!r}.")
    return row
