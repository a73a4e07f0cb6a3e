"""Every slice's tables on the one metadata, so foreign keys between slices resolve and
Alembic sees the whole schema. Import this, not the slices' models one by one, where the
whole schema matters."""

from shared.accounts.models import Account, ApiKey
from shared.batches.models import Batch
from shared.budgets.models import Budget
from shared.catalog.models import BindingQuote, ModelPrice
from shared.db import Base
from shared.jobs.models import IdempotencyKey, Job
from shared.ledger.models import LedgerEntry
from shared.media.models import MediaAsset
from shared.webhooks.models import WebhookDelivery, WebhookSubscription

metadata = Base.metadata

__all__ = [
    "Account",
    "ApiKey",
    "Batch",
    "BindingQuote",
    "Budget",
    "IdempotencyKey",
    "Job",
    "LedgerEntry",
    "MediaAsset",
    "ModelPrice",
    "WebhookDelivery",
    "WebhookSubscription",
    "metadata",
]
