"""The credit ledger: `credits` (units and kinds, no database), `service` (the append-only
entries and the balances derived from them), `models`, `schemas`."""
