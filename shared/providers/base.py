"""The provider boundary: submit, status, result, cancel. Two implementations: fal, simulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.catalog import VideoModel

ProviderState = Literal["queued", "running", "completed", "failed"]


@dataclass(frozen=True)
class ProviderStatus:
    state: ProviderState
    progress: int | None = None
    queue_position: int | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # For a failed request: our job error code ("provider_error", "cancelled", "timeout", …).
    error_code: str = "provider_error"


@dataclass(frozen=True)
class ProviderResult:
    video_url: str
    content_type: str
    file_size: int | None
    # What the provider says it bills for the request, in the unit its price is quoted in
    # (fal: `x-fal-billable-units`, e.g. seconds of output); None when it does not say.
    # Kept in the job's own columns, not in `to_dict()`'s result.
    billable_units: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "video": {
                "url": self.video_url,
                "content_type": self.content_type,
                "file_size": self.file_size,
            }
        }


class ProviderError(Exception):
    """The provider refused or failed the request for good: the job fails, nothing is charged."""

    def __init__(self, message: str, *, code: str = "provider_error") -> None:
        super().__init__(message)
        self.code = code


class ProviderUnavailable(Exception):
    """A transient failure (network, 429, 5xx) where the request surely did not take effect:
    try again later."""


# What a provider's verified completion callback says: the video, how the request failed,
# or None when it carries no usable video (the provider's queue API has the result).
CallbackOutcome = ProviderResult | ProviderError | None


class SubmitOutcomeUnknown(Exception):
    """The submit call failed in a way that leaves open whether the provider took it (a read
    timeout, a dropped connection): never retry blindly, the dispatcher resolves the job."""


class VideoProvider(Protocol):
    name: str
    # True when the provider will call our webhook on completion: polling can slow down.
    webhooks_enabled: bool
    # How many status calls a batch of polls makes at once: 1, one after another in the
    # task's own thread (a local provider); more, on a small thread pool (a remote one,
    # whose calls mostly wait on the network; each of them must end by a deadline of its
    # own, as a pool thread cannot be interrupted).
    parallel_calls: int

    def submit(self, model: VideoModel, arguments: dict[str, Any]) -> str:
        """Start a generation; returns the provider's request id."""
        ...

    def status(self, model: VideoModel, request_id: str) -> ProviderStatus: ...

    def result(self, model: VideoModel, request_id: str) -> ProviderResult: ...

    def cancel(self, model: VideoModel, request_id: str) -> None: ...

    def render_seconds(self, model: VideoModel, arguments: dict[str, Any]) -> float | None:
        """How long this render should take, if the provider can tell (it paces polls)."""
        ...


def provider_arguments(model: VideoModel, normalized_input: dict[str, Any]) -> dict[str, Any]:
    """Our input, renamed to the model's own fields (image_url → start_image_url, …)."""
    return {
        model.provider_fields.get(name, name): value for name, value in normalized_input.items()
    }
