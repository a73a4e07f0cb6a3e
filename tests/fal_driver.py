"""Drive the real fal-client against a fal server, in a process of its own.

fal-client reads FAL_RUN_HOST/FAL_QUEUE_RUN_HOST when imported, so tests never import it: they
run this script with those variables, SSL_CERT_FILE and FAL_KEY set, and read its JSON output.

Input (argv[1] or stdin): {"key"?: str, "steps": [step, …]}, each step one of
    {"op": "submit", "app", "arguments", "webhook_url"?, "priority"?, "hint"?, "start_timeout"?}
    {"op": "status" | "result" | "cancel", "app", "request_id"}     ("$last" = last submitted)
    {"op": "follow", "app", "request_id", "timeout"?}   poll status with logs until Completed
Output: a JSON list with, per step, {"ok": value} or {"error": {class, message, status_code, …}}.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import fal_client


def describe(status: fal_client.Status) -> dict[str, Any]:
    """A fal-client status as JSON: its class name and fields."""
    return {"type": type(status).__name__, **vars(status)}


def run_step(client: fal_client.SyncClient, step: dict[str, Any], last: dict[str, str]) -> Any:
    app = step["app"]
    request_id = last["request_id"] if step.get("request_id") == "$last" else step.get("request_id")
    if step["op"] == "submit":
        handle = client.submit(
            app,
            step["arguments"],
            webhook_url=step.get("webhook_url"),
            priority=step.get("priority"),
            hint=step.get("hint"),
            start_timeout=step.get("start_timeout"),
        )
        last["request_id"] = handle.request_id
        return {
            "request_id": handle.request_id,
            "status_url": handle.status_url,
            "response_url": handle.response_url,
            "cancel_url": handle.cancel_url,
        }
    if step["op"] == "status":
        return describe(client.status(app, request_id, with_logs=True))
    if step["op"] == "result":
        return client.result(app, request_id)
    if step["op"] == "cancel":
        return client.cancel(app, request_id)
    if step["op"] == "follow":
        deadline = time.monotonic() + step.get("timeout", 30)
        statuses = [describe(client.status(app, request_id, with_logs=True))]
        while statuses[-1]["type"] != "Completed" and time.monotonic() < deadline:
            time.sleep(0.05)
            statuses.append(describe(client.status(app, request_id, with_logs=True)))
        return statuses
    raise ValueError(f"unknown op {step['op']!r}")


def main() -> None:
    command = json.loads(sys.argv[1] if len(sys.argv) > 1 else sys.stdin.read())
    client = fal_client.SyncClient(key=command.get("key") or os.environ["FAL_KEY"])
    last: dict[str, str] = {}
    outputs: list[dict[str, Any]] = []
    for step in command["steps"]:
        try:
            outputs.append({"ok": run_step(client, step, last)})
        except fal_client.client.FalClientHTTPError as exc:
            error = {"class": type(exc).__name__, "message": exc.message}
            error.update(status_code=exc.status_code, error_type=exc.error_type)
            error["request_id"] = exc.response_headers.get("x-fal-request-id")
            outputs.append({"error": error})
        except Exception as exc:  # reported to the test, which decides
            outputs.append({"error": {"class": type(exc).__name__, "message": str(exc)}})
    print(json.dumps(outputs))


if __name__ == "__main__":
    main()
