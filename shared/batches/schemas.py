"""The batches' wire shapes."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import ConfigDict, Field

from shared.jobs.schemas import Job, MetadataIn
from shared.wire import Closed, Open

MAX_ITEMS = 100
BatchStatus = Literal["processing", "completed", "completed_with_errors", "failed", "cancelled"]


class BatchItem(Closed):
    """One job of the batch: as `POST /v1/video/generate` takes it."""

    model: str = Field(description="A model id from GET /v1/video/models.")
    input: dict[str, Any] = Field(description="The model's parameters.")
    metadata: MetadataIn = Field(default_factory=dict)


class BatchCreate(Closed):
    """`POST /v1/video/batches`: up to 100 jobs submitted at once, under one hold of their
    estimates' sum (all are accepted, or none)."""

    model_config = ConfigDict(extra="forbid", title="BatchRequest")

    items: list[BatchItem] = Field(min_length=1, max_length=MAX_ITEMS)


class BatchCounts(Open):
    """The items by status."""

    queued: int = 0
    processing: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0


class Batch(Open):
    """A batch and its items. `status`: `processing` while any item is unfinished; then
    `completed` (every item), `completed_with_errors` (some completed, the others failed or
    were cancelled), `failed` (none completed) or `cancelled` (every item cancelled). Only
    completed items are charged; the others' share of the hold is released."""

    id: uuid.UUID
    status: BatchStatus
    item_count: int
    counts: BatchCounts
    estimated_credits: float = Field(description="The hold: the items' estimates, summed.")
    charged_credits: float = Field(description="What the completed items were charged.")
    created_at: datetime
    completed_at: datetime | None = Field(description="When the last item ended.")
    items: list[Job] = Field(description="The jobs, in the order of the request's items.")


class BatchAccepted(Open):
    """202 to a batch: its id, its items' job ids (in order) and the hold."""

    batch_id: uuid.UUID
    status: BatchStatus
    item_count: int
    job_ids: list[uuid.UUID]
    estimated_credits: float
    hint: str
