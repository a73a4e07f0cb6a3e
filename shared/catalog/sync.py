"""The live catalog: listings and prices from fal's platform API, cached in the database.

Beat refreshes the `model_prices` rows every `CATALOG_TTL_SECONDS / 2`; the API reads
them. Rows older than the TTL, or none at all (fal unreachable, no `FAL_KEY`), mean the
built-in catalog. The platform only overlays names, descriptions and prices on the
models we know: a model's parameters, and how our inputs map onto them, stay ours.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import ColumnElement, Numeric, case, cast, func, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from shared.catalog.builtin import BUILTIN, BUILTIN_MODELS, Catalog, VideoModel
from shared.catalog.models import ModelPrice
from shared.config import Settings
from shared.db import Database, utcnow

PRICING_BATCH = 50  # the platform API's limit of ids per pricing request
PRICE_UNITS = {"second": "second", "seconds": "second", "video": "video", "videos": "video"}


class CatalogUnavailable(Exception):
    """The platform API could not be read; the last good listing stays in force."""


def _get(settings: Settings, path: str, params: dict[str, Any]) -> dict[str, Any]:
    try:
        response = httpx.get(
            f"{settings.fal_platform_url}{path}",
            params=params,
            headers={"Authorization": f"Key {settings.fal_key}"},
            timeout=15,
        )
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise CatalogUnavailable(f"fal platform API: {exc}") from exc


def fetch_listings(settings: Settings) -> list[ModelPrice]:
    """Ask the platform API about every model we offer; one row per model it knows."""
    ids = [model.id for model in BUILTIN_MODELS]
    rows: dict[str, ModelPrice] = {}
    cursor: str | None = None
    while True:
        page = _get(
            settings,
            "/models",
            {"endpoint_id": ids, "limit": 50, **({"cursor": cursor} if cursor else {})},
        )
        for entry in page.get("models", []):
            metadata = entry.get("metadata") or {}
            rows[entry["endpoint_id"]] = ModelPrice(
                model_id=entry["endpoint_id"],
                display_name=metadata.get("display_name"),
                description=metadata.get("description"),
                status=metadata.get("status"),
            )
        cursor = page.get("next_cursor")
        if not page.get("has_more") or not cursor:
            break
    for start in range(0, len(ids), PRICING_BATCH):
        batch = ",".join(ids[start : start + PRICING_BATCH])
        for price in _get(settings, "/models/pricing", {"endpoint_id": batch}).get("prices", []):
            row = rows.get(price["endpoint_id"])
            unit = PRICE_UNITS.get(str(price.get("unit", "")).lower())
            if row is not None and unit and price.get("currency", "USD") == "USD":
                row.unit_price_usd = float(price["unit_price"])
                row.price_unit = unit
    return [row for row in rows.values() if row.unit_price_usd is not None]


def refresh(*, session: Session, settings: Settings) -> int:
    """Store a fresh listing; returns how many models the platform priced."""
    listings = fetch_listings(settings)
    now = utcnow()
    for row in listings:
        row.fetched_at = now
        session.merge(row)
    session.flush()
    return len(listings)


def load_catalog(*, session: Session, settings: Settings, now: datetime | None = None) -> Catalog:
    """The catalog in force: the platform's fresh listing over the built-in models."""
    cutoff = (now or utcnow()) - timedelta(seconds=settings.catalog_ttl_seconds)
    rows = {
        row.model_id: row
        for row in session.scalars(select(ModelPrice).where(ModelPrice.fetched_at >= cutoff))
    }
    if not rows:
        return BUILTIN
    models = tuple(_overlay(model, rows.get(model.id)) for model in BUILTIN_MODELS)
    return Catalog(models, "fal")


def _overlay(model: VideoModel, row: ModelPrice | None) -> VideoModel:
    if row is None or row.unit_price_usd is None or row.price_unit is None:
        return model
    return dataclasses.replace(
        model,
        name=row.display_name or model.name,
        description=row.description or model.description,
        unit_price_usd=Decimal(str(row.unit_price_usd)),
        price_unit=row.price_unit,
    )


def provider_cost_usd(
    units: ColumnElement[float], model_id: InstrumentedAttribute[str]
) -> ColumnElement[float]:
    """What `units` of the model `model_id` cost at the provider, in USD, as SQL (a job's
    `provider_cost_usd`, written by the statement that records its delivery): units × the
    model's unit price, rounded to a millionth of a dollar; NULL when `units` is NULL.

    The price is the one the provider last published (`model_prices`, however old: fal bills
    at its own price, and the latest one it told us is our best account of it), else the
    built-in catalog's (no listing fetched, e.g. the simulator). Units come in the unit the
    price is quoted in (fal's `x-fal-billable-units`), so the product needs no conversion."""
    listed = select(ModelPrice.unit_price_usd).where(ModelPrice.model_id == model_id)
    builtin = case(
        {model.id: float(model.unit_price_usd) for model in BUILTIN_MODELS}, value=model_id
    )
    price = func.coalesce(listed.scalar_subquery(), builtin)
    return func.round(cast(units * price, Numeric(24, 12)), 6)


class CatalogCache:
    """The catalog in force, read from the database at most every `ttl_seconds` per process
    (one query less per submit; a refreshed price list reaches the API within the TTL)."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self._catalog: Catalog | None = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()

    def get(self, session: Session | None = None) -> Catalog:
        """The cached catalog; when stale, read with `session` if given (a caller inside a
        transaction must not wait for a second pooled connection), else a fresh one."""
        with self._lock:
            fresh = time.monotonic() - self._loaded_at < self.settings.catalog_cache_seconds
            if self._catalog is None or not fresh:
                if session is not None:
                    self._catalog = load_catalog(session=session, settings=self.settings)
                else:
                    with self.db.transaction() as own:
                        self._catalog = load_catalog(session=own, settings=self.settings)
                self._loaded_at = time.monotonic()
            return self._catalog
