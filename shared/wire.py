"""Building blocks of the wire shapes that every slice's `schemas` module uses."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, TypeAdapter

DIGITS = re.compile(r"-?[0-9]{1,12}")
_INSTANT = TypeAdapter(datetime)


def instant(value: datetime) -> str:
    """A time as the wire writes it (`2026-11-30T08:45:00Z` for UTC), for text that the
    clients write themselves."""
    return str(_INSTANT.dump_python(value, mode="json"))


class Closed(BaseModel):
    """A request body: unknown members are refused, naming them."""

    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    """An answer: a reader ignores members it does not know, so the API can add members
    without breaking older clients (the CLI and the agent tools read answers with these)."""

    model_config = ConfigDict(extra="ignore")


def _plain_integer(value: Any) -> Any:
    """Query strings carry text: only plain digits are a number ("1_0" and "1e3" are not),
    and at most 12 of them (the field's own bounds say which are allowed)."""
    if isinstance(value, str) and not DIGITS.fullmatch(value):
        too_long = re.fullmatch(r"-?[0-9]+", value) is not None
        raise ValueError("is too large" if too_long else "must be an integer")
    return value


QueryInt = Annotated[int, BeforeValidator(_plain_integer)]
