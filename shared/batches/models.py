"""A batch row: its items are jobs (`jobs.batch_id`); its status follows from theirs."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class Batch(Base):
    """Many jobs submitted at once under one aggregate hold (`ledger_entries.batch_id`).
    Nothing here changes after creation: the batch's status and counts are read from its
    items, so no second write can disagree with them."""

    __tablename__ = "batches"
    # The first batch made under an `Idempotency-Key`, with a hash of the request body.
    __table_args__ = (UniqueConstraint("account_id", "idempotency_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("api_keys.id"))
    item_count: Mapped[int] = mapped_column(Integer)
    held: Mapped[int] = mapped_column(BigInteger)  # the aggregate hold, hundredths of a credit
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
