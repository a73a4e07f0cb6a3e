"""The budgets' wire shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import ConfigDict, Field, model_validator

from shared.wire import Closed, Open

Scope = Literal["account", "key"]
Period = Literal["day", "month"]
CREDITS = "Credits, to two decimals."


class BudgetSet(Closed):
    """`POST /v1/budgets`: the most the account (`scope: "account"`, every key) or one of
    its keys (`scope: "key"`, `key_id`) may commit per calendar day or month (UTC). Setting
    a budget that exists (same scope, key and period) replaces its amount."""

    model_config = ConfigDict(extra="forbid", title="BudgetRequest")

    scope: Scope
    key_id: uuid.UUID | None = Field(default=None, description='With `scope: "key"` only.')
    period: Period
    credits: Decimal = Field(ge=0, le=10**9, decimal_places=2, description=CREDITS)

    @model_validator(mode="after")
    def _key_goes_with_scope(self) -> BudgetSet:
        if (self.scope == "key") != (self.key_id is not None):
            raise ValueError('key_id is given with scope "key", and only then')
        return self


class Budget(Open):
    """A budget and where the current period stands. Spent counts what the jobs submitted
    in the period commit: their charge once settled, their hold until then (failed and
    cancelled jobs commit nothing)."""

    id: uuid.UUID
    scope: Scope
    key_id: uuid.UUID | None
    period: Period
    credits: float = Field(description=CREDITS)
    spent_credits: float = Field(description=CREDITS)
    remaining_credits: float = Field(description=CREDITS)
    period_start: datetime
    period_end: datetime
    created_at: datetime
    updated_at: datetime


class BudgetList(Open):
    """`GET /v1/budgets`."""

    data: list[Budget]
