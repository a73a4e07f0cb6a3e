"""The request body as JSON, refusing what the database, JSON or UTF-8 cannot hold.

PostgreSQL refuses NUL characters in text, JSON cannot carry NaN or Infinity, and a lone
UTF-16 surrogate (`"\\ud800"`, valid JSON) has no UTF-8 encoding: each is refused here, at
the edge, naming where it is, instead of failing later as a 500 or in the worker.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from shared.errors import InvalidInput


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def json_body() -> Any:
    """The request body as JSON: no NaN or Infinity, every string storable text."""
    try:
        body = json.loads(request.get_data(), parse_constant=_refuse_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("The body must be JSON.", fields={"body": str(exc)}) from None
    found = _unstorable(body, "")
    if found is not None:
        where, why = found
        raise InvalidInput(f"{where or 'The body'} {why}.", fields={where or "body": why})
    return body


def _unstorable(value: Any, where: str) -> tuple[str, str] | None:
    """Where the first string that cannot be stored is (a dotted path), and why. A bad
    key is reported at its object: echoing the key itself back would not be text either."""
    if isinstance(value, str):
        problem = _text_problem(value)
        return None if problem is None else (where, f"contains {problem}")
    if isinstance(value, dict):
        for key, item in value.items():
            problem = _text_problem(key)
            if problem is not None:
                return where, f"has a key that contains {problem}"
            found = _unstorable(item, f"{where}.{key}" if where else key)
            if found is not None:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _unstorable(item, f"{where}[{index}]")
            if found is not None:
                return found
    return None


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "a lone UTF-16 surrogate (not valid Unicode text)"
    return None
