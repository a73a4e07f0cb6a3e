"""Request parsing that answers bad values with `invalid_input`, naming the parameter.

PostgreSQL refuses NUL characters in text and JSON cannot carry NaN or Infinity: both
are refused here, at the edge, instead of failing later as a 500.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import request

from shared.errors import InvalidInput

DIGITS = re.compile(r"[0-9]{1,12}")


def int_arg(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not DIGITS.fullmatch(raw.removeprefix("-")):
        raise InvalidInput(f"`{name}` must be an integer.", fields={name: "must be an integer"})
    value = int(raw)
    if not minimum <= value <= maximum:
        raise InvalidInput(
            f"`{name}` is out of range.", fields={name: f"must be between {minimum} and {maximum}"}
        )
    return value


def str_arg(name: str) -> str | None:
    value = request.args.get(name) or None
    if value is not None and "\x00" in value:
        raise InvalidInput(f"`{name}` contains a NUL character.", fields={name: "contains NUL"})
    return value


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
