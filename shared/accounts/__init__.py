"""Accounts and API keys. Keys are `nv_sk_…`, shown once, stored as SHA-256."""

from shared.accounts.service import (
    KEY_PREFIX,
    Caller,
    NewAccount,
    authenticate,
    create_account,
    create_api_key,
    get_owned,
    hash_key,
    set_scheduling,
)

__all__ = [
    "KEY_PREFIX",
    "Caller",
    "NewAccount",
    "authenticate",
    "create_account",
    "create_api_key",
    "get_owned",
    "hash_key",
    "set_scheduling",
]
