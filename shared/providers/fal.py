"""The fal.ai provider, through `fal-client`'s queue API and nothing else.

fal-client reads its hosts (`FAL_RUN_HOST`, `FAL_QUEUE_RUN_HOST`) when it is imported,
so it is imported here, in the worker, and never by the API. Every fal failure maps
to one of three outcomes: a permanent `ProviderError` with our job error code, a
transient `ProviderUnavailable` (retried with backoff), or, for a submit whose fate
is unknown, `SubmitOutcomeUnknown`.
"""

from __future__ import annotations

import re
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


class FalProvider:
    name = "fal"
    # A batch's status calls, each an HTTPS round trip to fal, eight at a time: 100 polls
    # of ~0.2 s each take ~2.5 s, well within the batch's asking time.
    parallel_calls = 8

    def __init__(self, settings: Settings) -> None:
        self._client = fal_client.SyncClient(key=settings.fal_key, default_timeout=30.0)
        self.webhook_url = settings.fal_webhook_url
        self.webhooks_enabled = settings.fal_webhook_url is not None
        self.start_timeout = settings.fal_start_timeout_seconds
        self.priority = settings.fal_priority

    def submit(self, model: VideoModel, arguments: dict[str, Any]) -> str:
        try:
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
            self._client.result(model.id, request_id)
        except fal_client.client.FalClientHTTPError as exc:  # error_type: body, else header
            error_type = exc.error_type or status.error_type
            return request_failure(exc.status_code, exc.message, error_type)
        except httpx.HTTPError:
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
