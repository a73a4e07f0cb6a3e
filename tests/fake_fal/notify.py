"""Watch requests that asked for a webhook and send the callback when each one ends."""

from __future__ import annotations

import threading
from typing import Any

from tests.fake_fal.queue import FakeQueue, FalRequest
from tests.fake_fal.webhooks import WebhookSender

POLL_SECONDS = 0.05


# fal's words when a result is not valid JSON (its webhook docs, "Payload errors").
PAYLOAD_ERROR = (
    "Response payload is not JSON serializable. Either return a JSON serializable object "
    "or use the queue endpoint to retrieve the response."
)


def callback_body(request: FalRequest) -> dict[str, Any]:
    """The JSON fal POSTs to a webhook for an ended request (gateway id = request id here):
    OK with the result as `payload` (or `payload: null` and a `payload_error`), or ERROR
    with the result's error answer as `payload` and its HTTP status in `error`."""
    outcome = request.outcome
    assert outcome is not None, "only ended requests have a callback"
    body: dict[str, Any] = {
        "request_id": request.request_id,
        "gateway_request_id": request.request_id,
        "status": "OK" if outcome.error is None else "ERROR",
        "payload": outcome.body,
    }
    if outcome.error is not None:
        body["error"] = f"Invalid status code: {outcome.http_status}"
    elif request.directives.webhook_unserializable:
        body.update(payload=None, payload_error=PAYLOAD_ERROR)
    return body


class WebhookNotifier:
    """A background thread that notices ended requests and hands their callbacks to the sender."""

    def __init__(self, queue: FakeQueue, sender: WebhookSender) -> None:
        self.queue = queue
        self.sender = sender
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-fal-notifier", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (deliveries under way are the sender's to stop)."""
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            for request in self.queue.all():
                url = request.webhook_url
                if url and not request.webhook_scheduled and self.queue.has_ended(request):
                    request.webhook_scheduled = True
                    threading.Thread(
                        target=self._notify,
                        args=(request, url),
                        name=f"fake-fal-webhook-{request.request_id}",
                        daemon=True,
                    ).start()

    def _notify(self, request: FalRequest, url: str) -> None:
        self.queue.snapshot(request)  # settles the outcome (renders the video)
        directives = request.directives
        if directives.webhook_copies == 0:
            return

        def record(delivered: bool) -> None:
            request.count("webhook_attempt")
            if delivered:
                request.count("webhook_delivery")

        self.sender.deliver(
            url,
            request.request_id,
            callback_body(request),
            copies=directives.webhook_copies,
            delay=directives.webhook_delay,
            on_attempt=record,
        )
