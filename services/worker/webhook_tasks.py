"""The customer webhook delivery task, on its own queue (`<CELERY_QUEUE>.webhooks`): a flood
of deliveries never delays polls, settlement or ingest.

It takes a delivery id and the attempts made so far, claims the attempt, POSTs with no
database transaction open, records the outcome and sends what follows (a near retry, or
the job's next event); the dispatcher sends everything else that is due
(shared/webhooks/deliveries.py has the rules).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery import Task, shared_task

from services.worker import celery_app as names
from services.worker.tasks import DB_OUTAGE_RETRY, runtime_for, time_limits
from shared import metrics
from shared.db import utcnow
from shared.media.url_policy import address_policy
from shared.webhooks import deliveries, delivery

log = logging.getLogger(__name__)


@shared_task(
    bind=True,
    name=names.DELIVER_WEBHOOK,
    max_retries=5,
    **DB_OUTAGE_RETRY,
    **time_limits(deliveries.LEASE / 2),
)
def deliver_webhook(self: Task, delivery_id: str, attempts: str) -> None:
    runtime = runtime_for(self.app.naive_settings)
    settings = runtime.settings
    key, made = uuid.UUID(delivery_id), int(attempts)
    with runtime.db.transaction() as session:
        claimed = deliveries.begin_attempt(
            session=session, delivery_id=key, attempts=made, now=utcnow()
        )
    if claimed is None:
        return
    attempt = delivery.post(
        claimed.url,
        webhook_id=claimed.webhook_id,
        secret=claimed.secret,
        body=claimed.body,
        allow_address=address_policy(allow_private=settings.webhook_allow_private_urls),
    )
    with runtime.db.transaction() as session:
        sends = deliveries.record_attempt(
            session=session,
            delivery_id=key,
            attempts=made + 1,
            attempt=attempt,
            now=utcnow(),
            schedule=settings.webhook_retry_schedule,
            disable_after=timedelta(seconds=settings.webhook_disable_after_seconds),
        )
        metrics.observe_webhook_attempt(
            session=session, delivery_id=key, attempts=made + 1, attempt=attempt
        )
        names.send_webhook_deliveries(session, self.app, sends)
    log.info(
        "webhook delivery %s attempt %d: %s",
        delivery_id,
        made + 1,
        attempt.status_code or attempt.error,
    )
