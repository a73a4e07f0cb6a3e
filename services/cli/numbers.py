"""Command-line numbers: a decimal amount of credits, refused in click's own words when it
is not a number (`Decimal` as a click type raised `decimal.InvalidOperation`, a traceback)."""

from decimal import Decimal, InvalidOperation
from typing import Any

import click


class DecimalType(click.ParamType):
    """A decimal number, exactly as written (`2.5`, not a float's nearest)."""

    name = "decimal"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, Decimal):
            return value
        try:
            return Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)


DECIMAL = DecimalType()
