"""A budget row: the most an account (or one of its keys) may commit per day or month."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class Budget(Base):
    """One limit: `scope` "account" (every key) or "key" (`key_id` only), `period` "day" or
    "month" (calendar, UTC). At most one per (account, scope, key, period): setting it
    again replaces the amount."""

    __tablename__ = "budgets"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    scope: Mapped[str] = mapped_column(String(16))
    key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    period: Mapped[str] = mapped_column(String(8))
    amount: Mapped[int] = mapped_column(BigInteger)  # hundredths of a credit
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
