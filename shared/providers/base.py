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


@dataclass(frozen=True)
class ProviderResult:
    video_url: str
    content_type: str
    file_size: int | None

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
    """A transient failure (network, 429, 5xx): try again later."""


class VideoProvider(Protocol):
    name: str

    def submit(self, model: VideoModel, arguments: dict[str, Any]) -> str:
        """Start a generation; returns the provider's request id."""
        ...

    def status(self, model: VideoModel, request_id: str) -> ProviderStatus: ...

    def result(self, model: VideoModel, request_id: str) -> ProviderResult: ...

    def cancel(self, model: VideoModel, request_id: str) -> None: ...


def provider_arguments(model: VideoModel, normalized_input: dict[str, Any]) -> dict[str, Any]:
    """Our input, renamed to the model's own fields (image_url → start_image_url, …)."""
    return {
        model.provider_fields.get(name, name): value for name, value in normalized_input.items()
    }
