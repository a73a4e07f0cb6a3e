"""Provider implementations, chosen by `NAIVE_PROVIDER`."""

from shared.config import Settings
from shared.providers.base import VideoProvider
from shared.providers.simulator import SimulatorProvider


def make_provider(settings: Settings) -> VideoProvider:
    if settings.provider == "fal":
        # Imported here only: fal-client fixes its hosts at import, and the API never needs it.
        from shared.providers.fal import FalProvider

        return FalProvider(settings)
    return SimulatorProvider(
        settings.simulator_root,
        settings.simulator_latency_seconds,
        allow_private_urls=settings.allow_private_image_urls,
    )
