"""Query-string parsing that answers bad values with `invalid_input`, naming the parameter."""

from __future__ import annotations

from flask import request

from shared.errors import InvalidInput


def int_arg(name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(
            f"`{name}` must be an integer.", fields={name: "must be an integer"}
        ) from None
    if not minimum <= value <= maximum:
        raise InvalidInput(
            f"`{name}` is out of range.", fields={name: f"must be between {minimum} and {maximum}"}
        )
    return value


def str_arg(name: str) -> str | None:
    return request.args.get(name) or None
