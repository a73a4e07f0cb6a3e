"""Ledger entries: append-only credit movements."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base, utcnow


class LedgerEntry(Base):
    """Append-only credit movements; balance, held and available are sums over these."""

    __tablename__ = "ledger_entries"
    # One capture, one hold, one release per job: a duplicate settle cannot charge twice.
    # A batch holds once for all its items (`batch_id`, no `job_id`); each item's capture
    # and release carry its job.
    # The account's entries newest first (`GET /v1/credits` pages by it); its balance sums
    # them by the same leading column.
    __table_args__ = (
        UniqueConstraint("job_id", "kind"),
        UniqueConstraint("batch_id", "kind"),
        Index("ix_ledger_entries_account_created", "account_id", "created_at", "id"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id"))
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[int] = mapped_column(BigInteger)
    note: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
