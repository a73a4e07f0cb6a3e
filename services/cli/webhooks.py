"""`naive webhooks`: subscribe a URL to job events, list and remove subscriptions, see each
one's deliveries and send one again."""

from typing import get_args

import click

from services.cli import views
from services.cli.client import read, segment
from services.cli.hints import command
from services.cli.state import State, json_option, pass_state
from shared.webhooks.schemas import (
    EventType,
    Webhook,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
)

EVENTS = list(get_args(EventType))


@click.group()
@json_option
def webhooks() -> None:
    """Receive job events at your URL, signed as Standard Webhooks specifies."""


@webhooks.command("create")
@click.option("--url", required=True, help="Where the events are POSTed (https or http).")
@click.option(
    "--event",
    "events",
    multiple=True,
    type=click.Choice(EVENTS),
    help="An event type to send; repeat it. Default: every type.",
)
@click.option("--description", metavar="TEXT", help="A note for people.")
@json_option
@pass_state
def create(state: State, url: str, events: tuple[str, ...], description: str | None) -> None:
    """Subscribe URL to job events; prints the signing secret, this once."""
    with state.action("webhooks.create") as out:
        body = {"url": url, "events": list(events or EVENTS), "description": description}
        created = read(WebhookCreated, state.client.post("/v1/webhooks", body))
        out.success(
            created.model_dump(mode="json"),
            view=lambda: views.webhook(created),
            next_steps=[command("webhooks", "deliveries", created.id)],
            hints=[
                "Keep the secret: it verifies each delivery's signature and is not shown again."
            ],
        )


@webhooks.command("list")
@json_option
@pass_state
def list_webhooks(state: State) -> None:
    """Your webhook subscriptions."""
    with state.action("webhooks.list") as out:
        page = state.client.fetch(WebhookList, "/v1/webhooks")
        out.success(
            page.model_dump(mode="json"),
            view=lambda: views.webhooks(page.data),
            next_steps=(
                [command("webhooks", "deliveries", page.data[0].id)]
                if page.data
                else [command("webhooks", "create", "--url", "URL")]
            ),
            hints=[] if page.data else ["No webhooks yet."],
        )


@webhooks.command("get")
@click.argument("webhook_id")
@json_option
@pass_state
def get_webhook(state: State, webhook_id: str) -> None:
    """Show one subscription."""
    with state.action("webhooks.get") as out:
        found = state.client.fetch(Webhook, f"/v1/webhooks/{segment(webhook_id)}")
        out.success(
            found.model_dump(mode="json"),
            view=lambda: views.webhook(found),
            next_steps=(
                [command("webhooks", "enable", found.id)] if found.status == "disabled" else []
            )
            + [command("webhooks", "deliveries", found.id)],
        )


@webhooks.command("enable")
@click.argument("webhook_id")
@json_option
@pass_state
def enable_webhook(state: State, webhook_id: str) -> None:
    """Turn a disabled subscription back on (`naive webhooks get` says why it was disabled)."""
    with state.action("webhooks.enable") as out:
        enabled = read(
            Webhook,
            state.client.patch(f"/v1/webhooks/{segment(webhook_id)}", {"status": "enabled"}),
        )
        out.success(
            enabled.model_dump(mode="json"),
            view=lambda: views.webhook(enabled),
            next_steps=[command("webhooks", "deliveries", enabled.id)],
            hints=[
                "New events are sent again; what it missed while disabled can be sent with "
                "`naive webhooks redeliver DELIVERY_ID`."
            ],
        )


@webhooks.command("delete")
@click.argument("webhook_id")
@json_option
@pass_state
def delete_webhook(state: State, webhook_id: str) -> None:
    """Remove a subscription: nothing more is sent to it."""
    with state.action("webhooks.delete") as out:
        state.client.delete(f"/v1/webhooks/{segment(webhook_id)}")
        out.success(
            {"id": webhook_id, "deleted": True},
            view=lambda: f"Deleted webhook {webhook_id}.",
            next_steps=[command("webhooks", "list")],
        )


@webhooks.command("deliveries")
@click.argument("webhook_id")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N, newest first.")
@json_option
@pass_state
def deliveries(state: State, webhook_id: str, limit: int | None) -> None:
    """A subscription's deliveries, newest first: status, attempts, last answer, next attempt."""
    with state.action("webhooks.deliveries") as out:
        page = state.client.fetch(
            WebhookDeliveryList, f"/v1/webhooks/{segment(webhook_id)}/deliveries", {"limit": limit}
        )
        out.success(
            page.model_dump(mode="json"),
            view=lambda: views.deliveries(page.data),
            next_steps=([command("webhooks", "redeliver", page.data[0].id)] if page.data else []),
            hints=[] if page.data else ["Nothing sent yet: deliveries start with the next job."],
        )


@webhooks.command("redeliver")
@click.argument("delivery_id")
@json_option
@pass_state
def redeliver(state: State, delivery_id: str) -> None:
    """Send a delivery again: the identical body under the same webhook-id."""
    with state.action("webhooks.redeliver") as out:
        delivery = read(
            WebhookDelivery,
            state.client.post(f"/v1/webhook-deliveries/{segment(delivery_id)}/redeliver", None),
        )
        out.success(
            delivery.model_dump(mode="json"),
            view=lambda: views.deliveries([delivery]),
            hints=["Queued: it is sent now, or after its job's earlier events."],
        )
