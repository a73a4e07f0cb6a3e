"""Customer webhooks: an account's subscriptions to its jobs' events, their deliveries and
redelivery (fal's own callback is `routes/webhooks.py`). Another account's subscription or
delivery is not found, never forbidden."""

from __future__ import annotations

from flask import Blueprint, Response

from services.api import context
from services.api.contract import Reply, route
from services.worker.celery_app import send_webhook_deliveries
from shared.db import utcnow
from shared.errors import InvalidInput, NotFound
from shared.webhooks import deliveries
from shared.webhooks import service as webhooks
from shared.webhooks.schemas import (
    DeliveryQuery,
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
    WebhookUpdate,
)

bp = Blueprint("customer_webhooks", __name__, url_prefix="/v1/webhooks")
deliveries_bp = Blueprint("webhook_deliveries", __name__, url_prefix="/v1/webhook-deliveries")


@route(
    bp,
    "POST",
    "",
    summary="Subscribe a URL to job events",
    body=WebhookCreate,
    replies={201: Reply("The subscription, with its signing secret (shown once).", WebhookCreated)},
    errors=(InvalidInput,),
)
def create_webhook(body: WebhookCreate) -> WebhookCreated:
    runtime = context.runtime()
    account_id = context.authenticated_account()
    with runtime.db.transaction() as session:
        row = webhooks.create(
            session=session,
            account_id=account_id,
            spec=body,
            allow_private=runtime.settings.webhook_allow_private_urls,
        )
        return WebhookCreated(**Webhook.of(row).model_dump(), secret=row.secret)


@route(
    bp,
    "GET",
    "",
    summary="The account's webhook subscriptions, oldest first",
    replies={200: Reply("Every subscription (without its secret).", WebhookList)},
)
def list_webhooks() -> WebhookList:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        rows = webhooks.list_for(session=session, account_id=account_id)
        return WebhookList(data=[Webhook.of(row) for row in rows])


@route(
    bp,
    "GET",
    "/<webhook_id>",
    summary="A webhook subscription",
    replies={200: Reply("The subscription (without its secret).", Webhook)},
    errors=(NotFound,),
)
def get_webhook(webhook_id: str) -> Webhook:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        return Webhook.of(
            webhooks.get(session=session, account_id=account_id, webhook_id=webhook_id)
        )


@route(
    bp,
    "PATCH",
    "/<webhook_id>",
    summary="Change a webhook subscription's URL, events or description",
    body=WebhookUpdate,
    replies={200: Reply("The subscription as changed.", Webhook)},
    errors=(NotFound, InvalidInput),
)
def update_webhook(webhook_id: str, body: WebhookUpdate) -> Webhook:
    runtime = context.runtime()
    account_id = context.authenticated_account()
    with runtime.db.transaction() as session:
        row = webhooks.update(
            session=session,
            account_id=account_id,
            webhook_id=webhook_id,
            change=body,
            allow_private=runtime.settings.webhook_allow_private_urls,
        )
        return Webhook.of(row)


@route(
    bp,
    "DELETE",
    "/<webhook_id>",
    summary="Delete a webhook subscription",
    replies={204: Reply("Deleted: nothing more is sent to it.")},
    errors=(NotFound,),
)
def delete_webhook(webhook_id: str) -> Response:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        webhooks.delete(session=session, account_id=account_id, webhook_id=webhook_id)
    return Response(status=204)


@route(
    bp,
    "GET",
    "/<webhook_id>/deliveries",
    summary="A subscription's deliveries, newest first",
    query=DeliveryQuery,
    replies={200: Reply("Each event sent or to send, with its attempts.", WebhookDeliveryList)},
    errors=(NotFound, InvalidInput),
)
def list_deliveries(webhook_id: str, query: DeliveryQuery) -> WebhookDeliveryList:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        rows = deliveries.list_for(
            session=session, account_id=account_id, webhook_id=webhook_id, limit=query.limit
        )
        return WebhookDeliveryList(data=[WebhookDelivery.of(row) for row in rows])


@route(
    deliveries_bp,
    "POST",
    "/<delivery_id>/redeliver",
    summary="Send a delivery again: the identical body under the same webhook-id",
    replies={202: Reply("Queued: sent now, or after its job's earlier events.", WebhookDelivery)},
    errors=(NotFound,),
)
def redeliver(delivery_id: str) -> WebhookDelivery:
    account_id = context.authenticated_account()
    with context.runtime().db.transaction() as session:
        row, sends = deliveries.redeliver(
            session=session, account_id=account_id, delivery_id=delivery_id, now=utcnow()
        )
        send_webhook_deliveries(session, context.celery(), sends)
        return WebhookDelivery.of(row)
