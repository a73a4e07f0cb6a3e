"""Accounts and API keys. Keys are `nv_sk_…`, shown once, stored as SHA-256."""

from shared.accounts.service import (
    KEY_PREFIX,
    NewAccount,
    authenticate,
    create_account,
    create_api_key,
    get_owned,
    hash_key,
)

__all__ = [
    "KEY_PREFIX",
    "NewAccount",
    "authenticate",
    "create_account",
    "create_api_key",
    "get_owned",
    "hash_key",
]
