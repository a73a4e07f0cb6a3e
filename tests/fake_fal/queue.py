"""fal's request queue over the simulator: what each request is doing now, and how it ended.

The simulator decides when a request leaves the queue, finishes or fails; this layer adds what
fal has and the simulator lacks: cancellation, start timeouts, queue positions, logs with
timestamps, the output's public URL, the result's `x-fal-billable-units` header (the units the
simulator bills: seconds of output, or one per video), and per-request call counters.
"""

from __future__ import annotations

import datetime
import math
import shlex
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.catalog import VideoModel
from shared.providers.base import ProviderError, ProviderStatus
from shared.providers.fal_protocol import BILLABLE_UNITS_HEADER
from shared.providers.simulator import QUEUE_FRACTION, SimulatorProvider
from shared.providers.simulator import parse_directives as parse_sim_directives
from tests.fake_fal.faults import Directives


@dataclass(frozen=True)
class Outcome:
    """How a request ended: its output, or its error and the HTTP answer its result gets."""

    output: dict[str, Any] | None = None
    error: str | None = None
    error_type: str | None = None
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    logs: tuple[dict[str, Any], ...] = ()
    inference_time: float | None = None
    video_file: Path | None = None
    # A model's validation error naming this input field (fal's 422 `detail` list).
    error_field: str | None = None

    @property
    def body(self) -> dict[str, Any]:
        """What `GET …/requests/<id>` answers, and a webhook's payload."""
        if self.output is not None:
            return self.output
        if self.error_field is not None:
            problem = {"loc": ["body", self.error_field], "msg": self.error, "type": "value_error"}
            return {"detail": [problem]}
        return {"detail": self.error, "error_type": self.error_type}


CANCELLED = Outcome(error="Request was cancelled", error_type="request_cancelled", http_status=400)
TIMED_OUT = Outcome(
    error="Request timed out before starting",
    error_type="request_timeout",
    http_status=504,
    headers={"X-Fal-Request-Timeout-Type": "user"},
)


@dataclass(frozen=True)
class Snapshot:
    """A request's state now, as fal's status route reports it."""

    state: Literal["queued", "running", "done"]
    queue_position: int = 0
    logs: tuple[dict[str, Any], ...] = ()
    outcome: Outcome | None = None


@dataclass
class FalRequest:
    """One submitted request: what was asked, and what has happened to it since."""

    request_id: str
    endpoint: str
    model: VideoModel
    arguments: dict[str, Any]
    directives: Directives
    webhook_url: str | None
    priority: str | None
    hint: str | None
    start_timeout: float | None
    submitted_at: float
    latency: float
    outcome: Outcome | None = None
    calls: Counter[str] = field(default_factory=Counter)
    webhook_scheduled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def simulator_id(self) -> str:
        """The simulator's id for this request (the same UUID, undashed)."""
        return uuid.UUID(self.request_id).hex

    @property
    def queue_seconds(self) -> float:
        """How long the simulator keeps it queued."""
        return self.latency * QUEUE_FRACTION

    def count(self, kind: str) -> int:
        """Count one more call of `kind` (status, result, cancel, …); the new total."""
        with self.lock:
            self.calls[kind] += 1
            return self.calls[kind]

    def stats(self) -> dict[str, Any]:
        """What `GET /_fake/stats` reports about this request."""
        return {
            "status_calls": self.calls["status"],
            "result_calls": self.calls["result"],
            "cancel_calls": self.calls["cancel"],
            "webhook_deliveries": self.calls["webhook_delivery"],
            "webhook_attempts": self.calls["webhook_attempt"],
            "endpoint": self.endpoint,
            "arguments": self.arguments,
            "webhook_url": self.webhook_url,
            "priority": self.priority,
            "hint": self.hint,
            "start_timeout": self.start_timeout,
            "submitted_at": self.submitted_at,
        }


class FakeQueue:
    """Submitted requests and their states, on top of a `SimulatorProvider`."""

    def __init__(self, simulator: SimulatorProvider, base_url: str) -> None:
        self.simulator = simulator
        self.base_url = base_url
        self._requests: dict[str, FalRequest] = {}
        self._submits: Counter[str] = Counter()
        self._lock = threading.Lock()

    def count_submit(self, body_key: str) -> int:
        """Count one more submit attempt of the same body; the new total."""
        with self._lock:
            self._submits[body_key] += 1
            return self._submits[body_key]

    def submit(
        self,
        endpoint: str,
        model: VideoModel,
        arguments: dict[str, Any],
        model_arguments: dict[str, Any],
        directives: Directives,
        **options: Any,
    ) -> FalRequest:
        """Start a request; `model_arguments` go to the simulator, `options` are recorded."""
        if directives.error is not None:
            fail = shlex.quote(f"fail={directives.error}")
            model_arguments = {
                **model_arguments,
                "prompt": f"{model_arguments.get('prompt', '')} [sim {fail}]",
            }
        simulator_id = self.simulator.submit(model, model_arguments)
        _, sim_options = parse_sim_directives(str(model_arguments.get("prompt", "")))
        request = FalRequest(
            request_id=str(uuid.UUID(simulator_id)),
            endpoint=endpoint,
            model=model,
            arguments=arguments,
            directives=directives,
            submitted_at=time.time(),
            latency=float(sim_options.get("latency") or self.simulator.default_latency),
            **options,
        )
        with self._lock:
            self._requests[request.request_id] = request
        return request

    def get(self, request_id: str) -> FalRequest | None:
        """The request with this id, if any."""
        with self._lock:
            return self._requests.get(request_id)

    def all(self) -> list[FalRequest]:
        """Every request submitted so far."""
        with self._lock:
            return list(self._requests.values())

    def has_ended(self, request: FalRequest) -> bool:
        """Whether the request reached a terminal state (cheap: renders nothing)."""
        if request.outcome is not None or self._start_timed_out(request, time.time()):
            return True
        return self._simulated(request).state in ("completed", "failed")

    def snapshot(self, request: FalRequest) -> Snapshot:
        """The request's state now; the first look at a finished request renders its video."""
        with request.lock:
            return self._snapshot(request)

    def cancel(self, request: FalRequest) -> bool:
        """Ask to cancel; False when the request had already ended."""
        with request.lock:
            state = self._snapshot(request).state
            if state == "done":
                return False
            if state == "queued" or not request.directives.ignore_cancel:
                self._end(request, CANCELLED)
            return True

    def _snapshot(self, request: FalRequest) -> Snapshot:
        now = time.time()
        if request.outcome is None and self._start_timed_out(request, now):
            self._end(request, TIMED_OUT)
        if request.outcome is not None:
            return Snapshot("done", logs=request.outcome.logs, outcome=request.outcome)
        status = self._simulated(request)
        if status.state == "queued":
            return Snapshot("queued", queue_position=self._position(request, status, now))
        logs = self._logs(request, status, now)
        if status.state == "running":
            return Snapshot("running", logs=logs)
        request.outcome = self._finish(request, status, logs)
        return Snapshot("done", logs=logs, outcome=request.outcome)

    def _simulated(self, request: FalRequest) -> ProviderStatus:
        return self.simulator.status(request.model, request.simulator_id)

    def _start_timed_out(self, request: FalRequest, now: float) -> bool:
        timeout = request.start_timeout
        return (
            timeout is not None
            and request.queue_seconds > timeout
            and now >= request.submitted_at + timeout
        )

    def _end(self, request: FalRequest, outcome: Outcome) -> None:
        request.outcome = outcome
        self.simulator.cancel(request.model, request.simulator_id)

    def _position(self, request: FalRequest, status: ProviderStatus, now: float) -> int:
        depth = request.directives.queue_depth
        if depth is None:
            return status.queue_position or 0
        left = 1 - (now - request.submitted_at) / request.queue_seconds
        return max(0, min(depth, math.floor(left * (depth + 1))))

    def _logs(
        self, request: FalRequest, status: ProviderStatus, now: float
    ) -> tuple[dict[str, Any], ...]:
        started = _timestamp(request.submitted_at + request.queue_seconds)
        logs = [{"timestamp": started, **line} for line in status.logs]
        if status.progress is not None:
            logs.append(
                {
                    "message": f"progress: {status.progress}%",
                    "level": "INFO",
                    "source": "fake-fal",
                    "timestamp": _timestamp(now),
                }
            )
        return tuple(logs)

    def _finish(
        self, request: FalRequest, status: ProviderStatus, logs: tuple[dict[str, Any], ...]
    ) -> Outcome:
        directives = request.directives
        if status.state == "failed":
            return Outcome(
                error=status.error,
                # A model's validation error has no request error type (fal's docs).
                error_type=None if directives.error_field else directives.error_type,
                http_status=directives.error_status,
                logs=logs,
                error_field=directives.error_field,
            )
        try:
            rendered = self.simulator.result(request.model, request.simulator_id)
        except ProviderError as exc:
            return Outcome(
                error=str(exc), error_type="file_download_error", http_status=422, logs=logs
            )
        name = f"{request.request_id}.mp4"
        video = {
            "url": f"{self.base_url}/files/{name}",
            "content_type": rendered.content_type,
            "file_name": name,
            "file_size": rendered.file_size,
        }
        inference_time = round(request.latency - request.queue_seconds, 3)
        billed = rendered.billable_units
        units = directives.units or ("none" if billed is None else f"{billed:g}")
        headers = {} if units == "none" else {BILLABLE_UNITS_HEADER: units}
        return Outcome(
            output={"video": video},
            headers=headers,
            logs=logs,
            inference_time=inference_time,
            video_file=_file_path(rendered.video_url),
        )


def _file_path(file_url: str) -> Path:
    return Path(urllib.request.url2pathname(urllib.parse.urlsplit(file_url).path))


def _timestamp(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).isoformat()
