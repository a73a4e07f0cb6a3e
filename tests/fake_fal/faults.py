"""Parse `[fal …]` prompt directives: the faults and behaviours one request asks for.

Tokens, e.g. `"A beach [fal submit=429x2 status=502-ingressx1 queue=5]"`:
    submit=CODE[xN]       the first N submit attempts of this body answer CODE (all without xN)
    status=CODE[xN]       the same for this request's status calls
    result=CODE[xN]       the same for its result calls
        CODE is an HTTP status (401, 422, 429, 500, 503, …) or `50X-ingress` (an nginx page
        without `x-fal-request-id`, which fal-client retries)
    queue=N               IN_QUEUE positions count down from N to 0 over the queue phase
    error='msg'           the request completes with this error
    error_type=T          its error type (default internal_server_error)
    error_status=S        the HTTP status of its result (default 500)
    error_field=F         its result's detail is a model's validation list naming input F
                          (fal's 422 shape: [{"loc": ["body", F], "msg", "type"}])
    submit_delay=S        the submit answer is held S seconds (the request runs meanwhile, so
                          its callback can come before the submitter knows the request id)
    status_delay=S        each status answer is held S seconds before anything is sent
    status_drip=S         each status answer's body is sent a byte at a time, S seconds apart
    cancel=ignore         cancelling it while running answers 202, but it completes anyway
    webhook=twice|none|delay=S   deliver the callback twice, never, or S seconds late
    webhook=unserializable       an OK callback with `payload: null` and a `payload_error`
                                 (fal's shape for output it could not serialise)
    file=404|html         the result's video URL answers 404, or an HTML page (200, text/html)
    units=V|none          the result's `x-fal-billable-units` header is V as given, or absent
                          (default: the units the simulator bills, seconds of output)
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field, replace
from typing import Any

DIRECTIVE = re.compile(r"\[fal\b([^\]]*)\]")
FAULT = re.compile(r"(?P<status>[1-5]\d\d)(?P<ingress>-ingress)?(?:x(?P<times>\d+))?")
FAULT_PHASES = ("submit", "status", "result")
INGRESS_STATUSES = (502, 503, 504)


class DirectiveError(ValueError):
    """A `[fal …]` directive that cannot be understood."""


@dataclass(frozen=True)
class Fault:
    """An error answer for the first `times` calls of one kind (every call when None)."""

    status: int
    ingress: bool = False
    times: int | None = None

    def applies(self, call_number: int) -> bool:
        """Whether the `call_number`-th call (counting from 1) gets this fault."""
        return self.times is None or call_number <= self.times


@dataclass(frozen=True)
class Directives:
    """Everything `[fal …]` asked of one request; the defaults are a well-behaved request."""

    faults: dict[str, Fault] = field(default_factory=dict)
    queue_depth: int | None = None
    error: str | None = None
    error_type: str = "internal_server_error"
    error_status: int = 500
    error_field: str | None = None
    submit_delay: float = 0.0
    status_delay: float = 0.0
    status_drip: float = 0.0
    ignore_cancel: bool = False
    webhook_copies: int = 1
    webhook_delay: float = 0.0
    webhook_unserializable: bool = False
    file_fault: str | None = None
    units: str | None = None  # the billable-units header as sent; "none": no header


def parse_directives(prompt: str) -> tuple[str, Directives]:
    """The prompt without `[fal …]` directives, and what they ask for."""
    directives = Directives()
    faults: dict[str, Fault] = {}
    for match in DIRECTIVE.finditer(prompt):
        try:
            tokens = shlex.split(match.group(1))
        except ValueError as exc:
            raise DirectiveError(f"bad [fal] directive {match.group(0)!r}: {exc}") from exc
        for token in tokens:
            key, _, value = token.partition("=")
            if key in FAULT_PHASES:
                faults[key] = _fault(token, value)
            else:
                directives = replace(directives, **_option(token, key, value))
    return DIRECTIVE.sub("", prompt).strip(), replace(directives, faults=faults)


def _fault(token: str, value: str) -> Fault:
    match = FAULT.fullmatch(value)
    if match is None:
        raise DirectiveError(f"bad fault {token!r}: expected CODE, CODExN or 50X-ingressxN")
    status, ingress = int(match["status"]), bool(match["ingress"])
    if ingress and status not in INGRESS_STATUSES:
        raise DirectiveError(f"bad fault {token!r}: only 502, 503 and 504 come from the ingress")
    times = int(match["times"]) if match["times"] else None
    return Fault(status=status, ingress=ingress, times=times)


def _option(token: str, key: str, value: str) -> dict[str, Any]:
    try:
        if key == "queue":
            return {"queue_depth": int(value)}
        if key == "error":
            return {"error": value or "the model failed"}
        if key == "error_type" and value:
            return {"error_type": value}
        if key == "error_status":
            return {"error_status": int(value)}
        if key == "error_field" and value:
            return {"error_field": value}
        if key in ("submit_delay", "status_delay", "status_drip"):
            return {key: float(value)}
        if token == "cancel=ignore":
            return {"ignore_cancel": True}
        if token == "webhook=unserializable":
            return {"webhook_unserializable": True}
        if key == "units" and value:
            return {"units": value}
        if token in ("file=404", "file=html"):
            return {"file_fault": value}
        if token in ("webhook=twice", "webhook=none"):
            return {"webhook_copies": 2 if value == "twice" else 0}
        if value.startswith("delay=") and key == "webhook":
            return {"webhook_delay": float(value.removeprefix("delay="))}
    except ValueError as exc:
        raise DirectiveError(f"bad [fal] token {token!r}: {exc}") from exc
    raise DirectiveError(f"unknown [fal] token {token!r}")
