"""The error answers fal gives: JSON `detail` bodies, 422 lists, and bare ingress pages."""

from __future__ import annotations

import time
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from flask import Response, jsonify

from tests.fake_fal.faults import Fault

# What fal's gateway says for each status: the detail, and the error type (if any).
REASONS: dict[int, tuple[str, str | None]] = {
    401: ("Invalid or missing API key: send `Authorization: Key <FAL_KEY>`", None),
    429: ("Too many requests: rate limit exceeded", None),
    500: ("Internal server error", "internal_server_error"),
    502: ("Bad gateway", "runner_disconnected"),
    503: ("Service unavailable", "runner_disconnected"),
    504: ("Gateway timeout", "request_timeout"),
}

INGRESS_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """`body` as JSON with `status` and `headers`."""
    response = jsonify(body)
    response.status_code = status
    response.headers.update(headers or {})
    return response


def dripped(response: Response, seconds: float) -> Response:
    """`response` with its body sent a byte at a time, `seconds` apart (a link that stalls
    without ever going quiet for long); as it is when `seconds` is 0."""
    if not seconds:
        return response
    body = response.get_data()

    def trickle() -> Iterator[bytes]:
        for byte in body:
            time.sleep(seconds)
            yield bytes([byte])

    return Response(trickle(), status=response.status_code, headers=response.headers)


def json_error(status: int, detail: Any = None, error_type: str | None = None) -> Response:
    """`{"detail", "error_type"?}` with `X-Fal-Error-Type`; the detail defaults by status."""
    default_detail, default_type = REASONS.get(status, (HTTPStatus(status).phrase, None))
    error_type = error_type or default_type
    body: dict[str, Any] = {"detail": default_detail if detail is None else detail}
    if error_type is None:
        return json_response(status, body)
    body["error_type"] = error_type
    return json_response(status, body, {"X-Fal-Error-Type": error_type})


def validation_error(problems: list[dict[str, Any]]) -> Response:
    """A model's 422: `{"detail": [{"loc", "msg", "type"}, …]}`."""
    return json_response(422, {"detail": problems})


def fault_response(fault: Fault) -> Response:
    """The answer a `[fal …]` fault asks for (ingress pages lack `x-fal-request-id`)."""
    if fault.ingress:
        phrase = HTTPStatus(fault.status).phrase
        page = INGRESS_PAGE.format(status=fault.status, phrase=phrase)
        return Response(page, status=fault.status, mimetype="text/html")
    if fault.status == 422:
        problem = {
            "loc": ["body", "prompt"],
            "msg": "prompt is not acceptable",
            "type": "value_error",
        }
        return validation_error([problem])
    return json_error(fault.status)
