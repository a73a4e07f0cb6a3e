"""Drive our fal provider (`shared.providers.fal.FalProvider`, the real fal-client under it)
against a fal server, in a process of its own: fal-client reads its hosts when imported, so
tests never import it (see tests/fal_driver.py, which drives fal-client alone).

Input (argv[1]): {"deadline": seconds (every call's, the submit's too),
                  "steps": [{"op": "submit", "model", "arguments"} |
                            {"op": "status", "model", "request_id"}, …]}
    ("$last" as a request id: the last one submitted)
Output: a JSON list with, per step, {"ok": value} or {"error": {class, message}}, and the
step's wall time in "seconds".
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Any

from shared import catalog
from shared.config import load_settings
from shared.providers.fal import FalProvider


def run_step(provider: FalProvider, step: dict[str, Any], last: dict[str, str]) -> Any:
    model = catalog.get_model(step["model"])
    if step["op"] == "submit":
        last["request_id"] = provider.submit(model, step["arguments"])
        return last["request_id"]
    if step["op"] == "status":
        request_id = last["request_id"] if step["request_id"] == "$last" else step["request_id"]
        return dataclasses.asdict(provider.status(model, request_id))
    raise ValueError(f"unknown op {step['op']!r}")


def main() -> None:
    command = json.loads(sys.argv[1])
    provider = FalProvider(load_settings(dict(os.environ)))
    provider.call_seconds = provider.submit_seconds = command["deadline"]
    last: dict[str, str] = {}
    outputs: list[dict[str, Any]] = []
    for step in command["steps"]:
        started = time.monotonic()
        try:
            output: dict[str, Any] = {"ok": run_step(provider, step, last)}
        except Exception as exc:  # reported to the test, which decides
            output = {"error": {"class": type(exc).__name__, "message": str(exc)}}
        outputs.append({**output, "seconds": time.monotonic() - started})
    print(json.dumps(outputs))


if __name__ == "__main__":
    main()
