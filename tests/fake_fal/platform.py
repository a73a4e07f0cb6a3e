"""fal's platform API (`/v1/models`, `/v1/models/pricing`) over the built-in catalog.

Prices come from a JSON file (`{endpoint_id: {"unit_price": x, "unit": "second"}}`) when one is
given, else from the catalog, except that Wan 2.7 is listed at 0.08 per second so a test can
tell the live price list from the built-in 0.10.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.catalog import VideoModel, all_models

MAX_PRICE_IDS = 50
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
LIVE_PRICE_OVERRIDES = {"fal-ai/wan/v2.7/text-to-video": {"unit_price": 0.08, "unit": "second"}}


class PlatformError(Exception):
    """A request the platform API refuses: its HTTP status and detail."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class Platform:
    """The model list and the price list the platform API serves."""

    prices: dict[str, dict[str, Any]]

    @classmethod
    def load(cls, prices_file: Path | None) -> Platform:
        """Prices from `prices_file` if given, else the catalog's with the live overrides."""
        if prices_file is not None:
            return cls(json.loads(prices_file.read_text()))
        builtin = {
            model.id: {"unit_price": float(model.unit_price_usd), "unit": model.price_unit}
            for model in all_models()
        }
        return cls({**builtin, **LIVE_PRICE_OVERRIDES})

    def models(
        self,
        *,
        endpoint_ids: list[str],
        query: str | None,
        category: str | None,
        limit: str | None,
        cursor: str | None,
    ) -> dict[str, Any]:
        """One page of `GET /v1/models`."""
        chosen = [
            model
            for model in all_models()
            if (not endpoint_ids or model.id in endpoint_ids)
            and (category is None or model.mode == category)
            and (query is None or _matches(model, query))
        ]
        size = _limit(limit)
        start = _offset(cursor)
        page = chosen[start : start + size]
        has_more = start + size < len(chosen)
        return {
            "models": [_model_entry(model) for model in page],
            "next_cursor": _cursor(start + size) if has_more else None,
            "has_more": has_more,
        }

    def pricing(self, endpoint_ids: list[str]) -> dict[str, Any]:
        """`GET /v1/models/pricing` for 1–50 ids; ids without a price are left out."""
        if not 1 <= len(endpoint_ids) <= MAX_PRICE_IDS:
            raise PlatformError(400, f"endpoint_id takes 1 to {MAX_PRICE_IDS} endpoint ids")
        prices = [
            {
                "endpoint_id": endpoint_id,
                "unit_price": self.prices[endpoint_id]["unit_price"],
                "unit": self.prices[endpoint_id]["unit"],
                "currency": self.prices[endpoint_id].get("currency", "USD"),
            }
            for endpoint_id in dict.fromkeys(endpoint_ids)
            if endpoint_id in self.prices
        ]
        return {"prices": prices, "next_cursor": None, "has_more": False}


def split_ids(values: list[str]) -> list[str]:
    """Endpoint ids from repeated and/or comma-separated `endpoint_id` parameters."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _matches(model: VideoModel, query: str) -> bool:
    text = f"{model.id} {model.name} {model.description}".lower()
    return query.lower() in text


def _model_entry(model: VideoModel) -> dict[str, Any]:
    return {
        "endpoint_id": model.id,
        "metadata": {
            "display_name": model.name,
            "category": model.mode,
            "status": "active",
            "description": model.description,
        },
    }


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIMIT:
        raise PlatformError(400, f"limit must be an integer from 1 to {MAX_LIMIT}")
    return int(value)


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(cursor.encode()))["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise PlatformError(400, "invalid cursor") from exc
    if not isinstance(offset, int) or offset < 0:
        raise PlatformError(400, "invalid cursor")
    return offset
