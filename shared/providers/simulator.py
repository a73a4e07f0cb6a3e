"""The simulated provider: the embedded default, and what the tests drive.

Deterministic and time-based: a request's state follows from its submit time and its
latency, read back from a small JSON file written at submit, so it needs no process
of its own. The result is a real H.264 MP4 rendered on first request (with a quiet AAC
soundtrack when the input sets `generate_audio`, as Kling's does by default); it reports the
units it bills as fal does (seconds of output, or one video), so jobs show a cost.

Behaviour is chosen per job by a directive in the prompt, e.g.
`"A beach [sim latency=3 fail='model exploded']"`:
    latency=S   seconds from submit to completion (default SIMULATOR_LATENCY_SECONDS or 8)
    fail='msg'  the request completes with an error
    reject      submit itself is refused
    stall       the request never finishes
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shlex
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from shared.catalog import VideoModel
from shared.media.fetch import ImageFetchError, load_image
from shared.media.render import FRAME_SIZES, render_video
from shared.media.url_policy import address_policy
from shared.providers.base import ProviderError, ProviderResult, ProviderStatus

DIRECTIVE = re.compile(r"\[sim\b([^\]]*)\]")
QUEUE_FRACTION = 0.2  # the first fifth of the latency is spent in the queue
QUEUE_DEPTH = 3
DEFAULT_LATENCY_SECONDS = 8.0


def parse_directives(prompt: str) -> tuple[str, dict[str, str]]:
    """The prompt without `[sim …]` directives, and the directives as a dict."""
    options: dict[str, str] = {}
    for match in DIRECTIVE.finditer(prompt):
        for token in shlex.split(match.group(1)):
            key, _, value = token.partition("=")
            options[key] = value
    return DIRECTIVE.sub("", prompt).strip(), options


class SimulatorProvider:
    name = "simulator"
    webhooks_enabled = False
    parallel_calls = 1  # a status call reads a small local file

    def __init__(
        self,
        root: Path,
        default_latency_seconds: float | None = None,
        *,
        allow_private_urls: bool = False,
    ) -> None:
        self.root = root
        self.default_latency = default_latency_seconds or DEFAULT_LATENCY_SECONDS
        self.allow_private_urls = allow_private_urls

    def _request_path(self, request_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{32}", request_id):
            raise ProviderError(f"unknown request {request_id!r}")
        return self.root / "requests" / f"{request_id}.json"

    def _load(self, request_id: str) -> dict[str, Any]:
        try:
            return json.loads(self._request_path(request_id).read_text())
        except FileNotFoundError as exc:
            raise ProviderError(f"unknown request {request_id!r}") from exc

    def _store(self, request_id: str, record: dict[str, Any]) -> None:
        path = self._request_path(request_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False) as handle:
            json.dump(record, handle)
        os.replace(handle.name, path)

    def render_seconds(self, model: VideoModel, arguments: dict[str, Any]) -> float | None:
        """The simulated latency: the prompt's `[sim latency=…]`, else the default."""
        _, options = parse_directives(str(arguments.get("prompt", "")))
        return float(options.get("latency") or self.default_latency)

    def submit(self, model: VideoModel, arguments: dict[str, Any]) -> str:
        _, options = parse_directives(str(arguments.get("prompt", "")))
        if "reject" in options:
            raise ProviderError("the simulated provider rejected the request")
        request_id = uuid.uuid4().hex
        latency = float(options.get("latency") or self.default_latency)
        self._store(
            request_id,
            {
                "model": model.id,
                "arguments": arguments,
                "output_seconds": model.output_seconds(arguments),
                "submitted_at": time.time(),
                "latency": latency,
                "options": options,
                "cancelled": False,
            },
        )
        return request_id

    def status(self, model: VideoModel, request_id: str) -> ProviderStatus:
        record = self._load(request_id)
        if record["cancelled"]:
            return ProviderStatus(
                "failed", error="cancelled at the provider", error_code="cancelled"
            )
        elapsed = time.time() - record["submitted_at"]
        latency = record["latency"]
        queue_time = latency * QUEUE_FRACTION
        if elapsed < queue_time:
            left = 1 - elapsed / queue_time
            return ProviderStatus("queued", queue_position=max(0, math.ceil(left * QUEUE_DEPTH)))
        logs = [{"message": "Model loaded", "level": "INFO", "source": "simulator"}]
        stalled = "stall" in record["options"]
        if elapsed < latency or stalled:
            progress = min(99, int(100 * (elapsed - queue_time) / (latency - queue_time)))
            return ProviderStatus(
                "running", progress=min(progress, 90 if stalled else 99), logs=logs
            )
        if "fail" in record["options"]:
            message = record["options"]["fail"] or "the simulated model failed"
            return ProviderStatus("failed", error=message, logs=logs)
        logs.append({"message": "Video rendered", "level": "INFO", "source": "simulator"})
        return ProviderStatus("completed", progress=100, logs=logs)

    def result(self, model: VideoModel, request_id: str) -> ProviderResult:
        record = self._load(request_id)
        # Renders are deterministic: requests that ask for the same video share one file.
        audio = wants_audio(model, record["arguments"])
        output = self.root / "outputs" / f"{_render_key(record, audio=audio)}.mp4"
        if not output.exists():
            self._render(record, output, audio=audio)
        return ProviderResult(
            output.as_uri(), "video/mp4", output.stat().st_size, billable_units(model, record)
        )

    def cancel(self, model: VideoModel, request_id: str) -> None:
        record = self._load(request_id)
        record["cancelled"] = True
        self._store(request_id, record)

    def _render(self, record: dict[str, Any], output: Path, *, audio: bool) -> None:
        arguments = record["arguments"]
        prompt, _ = parse_directives(str(arguments.get("prompt", "")))
        image_url = arguments.get("start_image_url") or arguments.get("image_url")
        image = None
        aspect_ratio = arguments.get("aspect_ratio", "16:9")
        if image_url:
            allow_address = address_policy(allow_private=self.allow_private_urls)
            try:
                image = load_image(image_url, allow_address=allow_address)
            except ImageFetchError as exc:
                raise ProviderError(f"could not load image_url: {exc}") from exc
            aspect_ratio = nearest_aspect_ratio(image.width, image.height)
        render_video(
            output,
            prompt=prompt,
            duration_seconds=record["output_seconds"],
            aspect_ratio=aspect_ratio,
            image=image,
            audio=audio,
        )


def wants_audio(model: VideoModel, arguments: dict[str, Any]) -> bool:
    """Whether the video has a soundtrack: the model takes `generate_audio` (Kling v3) and
    the request's input, defaults filled in, sets it true."""
    return "generate_audio" in model.properties and arguments.get("generate_audio") is True


def billable_units(model: VideoModel, record: dict[str, Any]) -> float:
    """What the simulated provider bills, as fal does, in the unit of the model's price:
    the seconds of output for a model priced per second, one for a model priced per video."""
    return float(record["output_seconds"]) if model.price_unit == "second" else 1.0


def _render_key(record: dict[str, Any], *, audio: bool) -> str:
    arguments = record["arguments"]
    prompt, _ = parse_directives(str(arguments.get("prompt", "")))
    what = {
        "prompt": prompt,
        "seconds": record["output_seconds"],
        "aspect_ratio": arguments.get("aspect_ratio", "16:9"),
        "image_url": arguments.get("start_image_url") or arguments.get("image_url"),
        **({"audio": True} if audio else {}),  # the silent videos' keys stay as they were
    }
    return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:32]


def nearest_aspect_ratio(width: int, height: int) -> str:
    ratio = width / height
    return min(
        FRAME_SIZES, key=lambda name: abs(FRAME_SIZES[name][0] / FRAME_SIZES[name][1] - ratio)
    )
