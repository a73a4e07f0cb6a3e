"""Credits and ledger units, without the database: amounts are integers in hundredths of a
credit, so sums are exact; what the wire shows is credits, to two decimals."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum

UNITS_PER_CREDIT = 100


class LedgerKind(StrEnum):
    TOPUP = "topup"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"


def to_units(credits: Decimal) -> int:
    """Credits (rounded half-up to the cent) as ledger units."""
    return int((credits * UNITS_PER_CREDIT).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def to_credits(units: int) -> float:
    """Ledger units as a number for JSON; two decimals are exact in a float's repr."""
    return float(Decimal(units) / UNITS_PER_CREDIT)


@dataclass(frozen=True)
class Balance:
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held
