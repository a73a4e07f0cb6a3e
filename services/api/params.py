"""The request body as JSON, refusing what the database or JSON cannot hold.

PostgreSQL refuses NUL characters in text and JSON cannot carry NaN or Infinity: both
are refused here, at the edge, instead of failing later as a 500.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from shared.errors import InvalidInput


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_body() -> Any:
    """The request body as JSON: no NaN or Infinity, no NUL characters in strings."""
    try:
        body = json.loads(request.get_data(), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The body must be JSON.", fields={"body": str(exc)}) from None
    if _has_nul(body):
        raise InvalidInput("The body contains a NUL character.", fields={"body": "contains NUL"})
    return body


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(key) or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False
