"""The fal.ai provider, through `fal-client`'s queue API and nothing else.

fal-client reads its hosts (`FAL_RUN_HOST`, `FAL_QUEUE_RUN_HOST`) when it is imported,
so it is imported here, in the worker, and never by the API. Every fal failure maps
to one of three outcomes: a permanent `ProviderError` with our job error code, a
transient `ProviderUnavailable` (retried with backoff), or, for a submit whose fate
is unknown, `SubmitOutcomeUnknown`.

Every call ends by its deadline. httpx's timeouts bound each read, not a call, and
fal-client tries a call up to ten times (timeouts and dropped connections included, with
sleeps growing to 30 s): a stalled fal could hold a call for twenty minutes, a batch's
thread with it. And a submit is not idempotent: fal-client sends it again after a
timeout or a dropped connection, each time a new render billed to us. So two httpx hooks
on fal-client's client (`_Call`) cap each attempt's timeouts at what is left of the
call's deadline, cut a body that trickles past it, and refuse to send a submit again
once an attempt went out without a complete answer: that submit's outcome is unknown
(one refused before it went out, or answered 429 or by fal's ingress, is still retried;
the upstream report is docs/upstream-fal-client-submit-retries.md). A call can outlast
its deadline by one of fal-client's pauses between attempts (the pause before an attempt
the hook then refuses): a few tenths of a second after a timeout, which comes at the
deadline; when every attempt fails at once, up to one and a half times what the call
took so far (fal-client doubles its pause each time, with jitter, to 30 s).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import fal_client
import httpx

from shared.catalog import VideoModel
from shared.config import Settings
from shared.providers.base import (
    ProviderError,
    ProviderResult,
    ProviderStatus,
    ProviderUnavailable,
    SubmitOutcomeUnknown,
)
from shared.providers.fal_protocol import (
    BILLABLE_UNITS_HEADER,
    billable_units,
    describe,
    parse_result,
    request_failure,
)

TRANSIENT_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
PROGRESS_LOG = re.compile(r"(\d{1,3})\s*%")
REQUEST_TIMEOUT_TYPE_HEADER = "x-fal-request-timeout-type"
# A status, result or cancel call answers within this or is unavailable (polled again
# later): within a batch's asking time (`machine.POLL_BATCH_ASKING`, 8 s), so a stalled
# call frees its thread by the time its batch has moved on.
CALL_DEADLINE_SECONDS = 8.0
# A submit's, within its task's soft limit (`machine.SUBMIT_BUDGET`, 30 s): it ends on this
# deadline's outcome (unavailable, or unknown), not on the limit's.
SUBMIT_DEADLINE_SECONDS = 20.0


@dataclass
class _Call:
    """One call to fal as its attempts go: its deadline and, for a submit, whether the
    current attempt went out and whether its answer came whole."""

    deadline: float
    submit: bool
    sent: bool = False
    answered: bool = False

    def trace(self, event: str, _info: dict[str, Any]) -> None:
        """httpcore's `trace` extension: the request's first bytes are on their way."""
        if event.endswith("send_request_headers.started"):
            self.sent = True

    def unanswered(self) -> Exception:
        """What the call raises when it must stop now."""
        if self.submit and self.sent and not self.answered:
            return SubmitOutcomeUnknown("fal submit went out and got no complete answer")
        return ProviderUnavailable("fal did not answer in time")


_current_call: ContextVar[_Call | None] = ContextVar("fal_call", default=None)


@contextmanager
def _calling(seconds: float, *, submit: bool = False) -> Iterator[None]:
    """Run the fal-client calls inside as one call that ends within `seconds`."""
    token = _current_call.set(_Call(time.monotonic() + seconds, submit))
    try:
        yield
    finally:
        _current_call.reset(token)


def _before_attempt(request: httpx.Request) -> None:
    """httpx's request hook: stop, or send this attempt with its timeouts capped at what
    is left of the call's deadline."""
    call = _current_call.get()
    if call is None:
        return
    left = call.deadline - time.monotonic()
    if (call.submit and call.sent and not call.answered) or left <= 0:
        raise call.unanswered()
    call.sent = call.answered = False
    timeouts = request.extensions.get("timeout", {})
    request.extensions["timeout"] = {
        name: left if value is None else min(value, left) for name, value in timeouts.items()
    }
    request.extensions["trace"] = call.trace


def _after_headers(response: httpx.Response) -> None:
    """httpx's response hook: the body is read within the call's deadline."""
    call = _current_call.get()
    if call is not None:
        response.stream = _BodyWithin(response.stream, call)


class _BodyWithin(httpx.SyncByteStream):
    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream, self._call = stream, call

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._stream:
            if time.monotonic() > self._call.deadline:
                raise self._call.unanswered()
            yield chunk
        self._call.answered = True

    def close(self) -> None:
        self._stream.close()


class FalProvider:
    name = "fal"
    # A batch's status calls, each an HTTPS round trip to fal, eight at a time: 100 polls
    # of ~0.2 s each take ~2.5 s, well within the batch's asking time.
    parallel_calls = 8

    def __init__(self, settings: Settings) -> None:
        self._client = fal_client.SyncClient(key=settings.fal_key, default_timeout=30.0)
        # fal-client's httpx client (`SyncClient._client`, made here): every call's attempts
        # pass through the deadline's hooks.
        self._client._client.event_hooks = {
            "request": [_before_attempt],
            "response": [_after_headers],
        }
        self.call_seconds, self.submit_seconds = CALL_DEADLINE_SECONDS, SUBMIT_DEADLINE_SECONDS
        self.webhook_url = settings.fal_webhook_url
        self.webhooks_enabled = settings.fal_webhook_url is not None
        self.start_timeout = settings.fal_start_timeout_seconds
        self.priority = settings.fal_priority

    def submit(self, model: VideoModel, arguments: dict[str, Any]) -> str:
        try:
            with _calling(self.submit_seconds, submit=True):
                handle = self._client.submit(
                    model.id,
                    arguments,
                    webhook_url=self.webhook_url,
                    priority=self.priority,  # type: ignore[arg-type]
                    start_timeout=self.start_timeout,
                )
        except fal_client.client.FalClientHTTPError as exc:
            raise http_error(exc) from exc
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise ProviderUnavailable(f"fal unreachable: {exc}") from exc
        except httpx.HTTPError as exc:
            raise SubmitOutcomeUnknown(f"fal submit interrupted: {exc}") from exc
        return handle.request_id

    def status(self, model: VideoModel, request_id: str) -> ProviderStatus:
        status = self._call(self._client.status, model.id, request_id, with_logs=True)
        if isinstance(status, fal_client.Queued):
            return ProviderStatus("queued", queue_position=status.position)
        logs = [_log_line(item) for item in (status.logs or [])]
        if isinstance(status, fal_client.InProgress):
            return ProviderStatus("running", progress=_progress(logs), logs=logs)
        if isinstance(status, fal_client.Completed) and status.error:
            failure = self._failure(model, request_id, status)
            return ProviderStatus("failed", logs=logs, error=str(failure), error_code=failure.code)
        return ProviderStatus("completed", progress=100, logs=logs)

    def _failure(
        self, model: VideoModel, request_id: str, status: fal_client.Completed
    ) -> ProviderError:
        """A request fal reports ended in error: its result's error answer says how (the same
        answer an ERROR callback carries), else the status's own summary does."""
        try:
            with _calling(self.call_seconds):
                self._client.result(model.id, request_id)
        except fal_client.client.FalClientHTTPError as exc:  # error_type: body, else header
            error_type = exc.error_type or status.error_type
            return request_failure(exc.status_code, exc.message, error_type)
        except (httpx.HTTPError, ProviderUnavailable):
            pass
        return request_failure(None, status.error, status.error_type)

    def result(self, model: VideoModel, request_id: str) -> ProviderResult:
        """The output, with the units fal bills for it (`x-fal-billable-units`).

        fal-client's `result()` returns the body and drops the headers, so this makes the
        GET it makes, through its own request function (its retries of 429 and ingress
        errors, its `FalClientHTTPError`) on its request handle's client and URL. It skips
        the status call `result()` makes first: we only ask for a result fal reported
        completed."""
        handle = self._client.get_handle(model.id, request_id)
        response = self._call(
            fal_client.client._maybe_retry_request,
            handle.client,
            "GET",
            handle.response_url,
            timeout=fal_client.client.QUEUE_POLL_TIMEOUT,
        )
        units = billable_units(response.headers.get(BILLABLE_UNITS_HEADER))
        return parse_result(response.json(), units)

    def cancel(self, model: VideoModel, request_id: str) -> None:
        try:
            with _calling(self.call_seconds):
                self._client.cancel(model.id, request_id)
        except fal_client.client.FalClientHTTPError as exc:
            if exc.status_code in (400, 404):  # already completed, or unknown: nothing to stop
                return
            raise http_error(exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"fal unreachable: {exc}") from exc

    def render_seconds(self, model: VideoModel, arguments: dict[str, Any]) -> float | None:
        """fal's queue API gives no render time: recent jobs of the model tell instead."""
        return None

    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            with _calling(self.call_seconds):
                return method(*args, **kwargs)
        except fal_client.client.FalClientHTTPError as exc:
            raise http_error(exc) from exc
        except httpx.HTTPError as exc:
            raise ProviderUnavailable(f"fal unreachable: {exc}") from exc


def http_error(exc: Any) -> Exception:
    """Map a `FalClientHTTPError` (after fal-client's own retries) to our outcome."""
    status = exc.status_code
    headers = {key.lower(): value for key, value in (exc.response_headers or {}).items()}
    if status == 504 and headers.get(REQUEST_TIMEOUT_TYPE_HEADER):
        return request_failure(status, exc.message, "request_timeout")
    if status in TRANSIENT_STATUS:
        detail = describe(exc.message) if "x-fal-request-id" in headers else ""
        return ProviderUnavailable(f"fal answered {status}" + (f": {detail}" if detail else ""))
    if status in (401, 403):
        return ProviderError("fal refused our credentials (FAL_KEY)")
    return request_failure(status, exc.message, exc.error_type)


def _log_line(item: dict[str, Any]) -> dict[str, Any]:
    return {key: item.get(key) for key in ("message", "level", "source", "timestamp")}


def _progress(logs: list[dict[str, Any]]) -> int | None:
    """fal reports no progress field; some models log a percentage."""
    for line in reversed(logs):
        match = PROGRESS_LOG.search(str(line.get("message") or ""))
        if match:
            return min(99, int(match.group(1)))
    return None
