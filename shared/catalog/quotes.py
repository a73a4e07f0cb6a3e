"""Binding quotes: a price promised for one exact request until the quote expires.

A quote stores the model, the normalized input (and its hash) and the credits. A submit
that names it must ask for the same model and input (after defaults are filled in) before
`expires_at`; it is then held and charged the quoted credits, even if the catalog's price
changed in between. A quote may be used by any number of such submits until it expires.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from shared.catalog import pricing, schemas
from shared.catalog.builtin import Catalog, normalize_input
from shared.catalog.models import BindingQuote
from shared.config import Settings
from shared.db import utcnow
from shared.errors import QuoteExpired, QuoteMismatch


def input_hash(model: str, normalized: dict[str, Any]) -> str:
    canonical = json.dumps([model, normalized], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def issue(
    *,
    session: Session,
    settings: Settings,
    catalog: Catalog,
    account_id: uuid.UUID,
    request: schemas.QuoteRequest,
) -> schemas.BindingQuote:
    """Price the request as a submit would and keep the price for `QUOTE_TTL_SECONDS`."""
    model = catalog.get(request.model)
    normalized = normalize_input(model, request.input)
    price = pricing.quote(model, model.output_seconds(normalized), settings)
    now = utcnow()
    row = BindingQuote(
        id=uuid.uuid4(),
        account_id=account_id,
        model=model.id,
        input=normalized,
        input_hash=input_hash(model.id, normalized),
        amount=price.units,
        unit_price_usd=float(price.unit_price_usd),
        created_at=now,
        expires_at=now + timedelta(seconds=settings.quote_ttl_seconds),
    )
    session.add(row)
    session.flush()
    return schemas.BindingQuote(
        **schemas.PriceQuote.of(price).model_dump(),
        quote_id=row.id,
        input=normalized,
        expires_at=row.expires_at,
    )


def honour(
    *,
    session: Session,
    account_id: uuid.UUID,
    quote_id: uuid.UUID,
    model: str,
    normalized: dict[str, Any],
    now: datetime | None = None,
) -> BindingQuote:
    """The account's quote for exactly this request, still in force; or `QuoteMismatch`
    (unknown, another account's, another model or input) or `QuoteExpired`."""
    row = session.get(BindingQuote, quote_id)
    if row is None or row.account_id != account_id:
        raise QuoteMismatch(f"No quote {quote_id} in this account.", quote_id=quote_id)
    if row.input_hash != input_hash(model, normalized):
        raise QuoteMismatch(
            f"Quote {quote_id} was made for another model or input: ask for a quote of this "
            "request (POST /v1/video/quotes).",
            quote_id=quote_id,
        )
    if (now or utcnow()) >= row.expires_at:
        raise QuoteExpired(
            f"Quote {quote_id} expired at {row.expires_at.isoformat()}: ask for a new one.",
            quote_id=quote_id,
            expired_at=row.expires_at,
        )
    return row
