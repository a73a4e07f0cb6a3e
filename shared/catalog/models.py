"""The provider's live listing and prices, as last fetched."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class ModelPrice(Base):
    """A model's listing and price as the provider's platform API last reported them."""

    __tablename__ = "model_prices"

    model_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    display_name: Mapped[str | None] = mapped_column(String(300))
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str | None] = mapped_column(String(32))
    unit_price_usd: Mapped[float | None]
    price_unit: Mapped[str | None] = mapped_column(String(32))
    fetched_at: Mapped[datetime] = mapped_column(default=utcnow)


class BindingQuote(Base):
    """A binding quote: the credits a job of `model` with exactly `input` (normalized, its
    hash in `input_hash`) costs if submitted by `expires_at`, whatever the catalog says by
    then."""

    __tablename__ = "quotes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"), index=True)
    model: Mapped[str] = mapped_column(String(200))
    input: Mapped[dict[str, Any]]
    input_hash: Mapped[str] = mapped_column(String(64))
    amount: Mapped[int] = mapped_column(BigInteger)  # hundredths of a credit
    unit_price_usd: Mapped[float]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
