"""Watch requests that asked for a webhook and send the callback when each one ends."""

from __future__ import annotations

import threading
from typing import Any

from tests.fake_fal.queue import FakeQueue, FalRequest
from tests.fake_fal.webhooks import WebhookSender

POLL_SECONDS = 0.05


def callback_body(request: FalRequest) -> dict[str, Any]:
    """The JSON fal POSTs to a webhook for an ended request (gateway id = request id here)."""
    outcome = request.outcome
    assert outcome is not None, "only ended requests have a callback"
    body: dict[str, Any] = {
        "request_id": request.request_id,
        "gateway_request_id": request.request_id,
        "status": "OK" if outcome.error is None else "ERROR",
        "payload": outcome.body,
    }
    if outcome.error is not None:
        body["error"] = outcome.error
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
