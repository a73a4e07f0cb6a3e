"""Credits for a job: price × output seconds (or per video) × markup ÷ credit value.

    estimated_credits = round(unit_price_usd × seconds × CREDIT_MARKUP / CREDIT_VALUE_USD, 2)

`seconds` is 1 for models priced per video. With the defaults (markup 5, 1 credit =
$0.50) Kling v3 pro text-to-video for 5 s costs 0.07 × 5 × 5 / 0.50 = 3.5 credits, the
figure the product spec gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.catalog.builtin import VideoModel
from shared.config import Settings
from shared.ledger.credits import to_units


@dataclass(frozen=True)
class Quote:
    model: str
    duration: int
    units: int  # ledger units (hundredths of a credit)
    unit_price_usd: Decimal
    price_unit: str
    credit_value_usd: Decimal


def quote(model: VideoModel, duration_seconds: int, settings: Settings) -> Quote:
    billed = Decimal(duration_seconds) if model.price_unit == "second" else Decimal(1)
    usd = model.unit_price_usd * billed * settings.credit_markup
    return Quote(
        model=model.id,
        duration=duration_seconds,
        units=to_units(usd / settings.credit_value_usd),
        unit_price_usd=model.unit_price_usd,
        price_unit=model.price_unit,
        credit_value_usd=settings.credit_value_usd,
    )
