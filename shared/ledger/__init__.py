"""The credit ledger: append-only entries, and the balances derived from them."""

from shared.ledger.service import (
    UNITS_PER_CREDIT,
    Balance,
    LedgerKind,
    balance,
    capture,
    entries,
    lock_account,
    place_hold,
    refund,
    release,
    to_credits,
    to_units,
    top_up,
)

__all__ = [
    "UNITS_PER_CREDIT",
    "Balance",
    "LedgerKind",
    "balance",
    "capture",
    "entries",
    "lock_account",
    "place_hold",
    "refund",
    "release",
    "to_credits",
    "to_units",
    "top_up",
]
