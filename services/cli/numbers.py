"""Command-line numbers: a decimal amount of credits, refused in click's own words when it
is not a number (`Decimal` as a click type raised `decimal.InvalidOperation`, a traceback);
seconds and credits as floats, never NaN or infinite (click's `FloatRange` lets both
through: NaN compares false with every bound, so `--timeout nan` waited forever); and how
the CLI shows a number."""

import math
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
            number = Decimal(str(value).strip())
        except (InvalidOperation, ValueError):
            self.fail(f"{value!r} is not a number.", param, ctx)
        if not number.is_finite():
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


class FiniteFloatRange(click.FloatRange):
    """`click.FloatRange` that refuses NaN and infinity."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return number


DECIMAL = DecimalType()
SECONDS = FiniteFloatRange(min=0, min_open=True)  # a time limit: leave it out for none
CREDITS = FiniteFloatRange(min=0)


def number(value: Any) -> str:
    """A number as written, without trailing zeros (`1000000000`, `3.5`, `0.0875`), or a
    dash. Not `:g`, which cut a balance of 1,234,567.5 credits to `1.23457e+06`."""
    if not isinstance(value, int | float):
        return "—"
    return f"{value:.6f}".rstrip("0").rstrip(".")
