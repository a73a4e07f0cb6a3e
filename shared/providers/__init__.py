"""Provider implementations, chosen by `NAIVE_PROVIDER`."""

from shared.config import Settings
from shared.providers.base import VideoProvider
from shared.providers.simulator import SimulatorProvider


def make_provider(settings: Settings) -> VideoProvider:
    return SimulatorProvider(settings.simulator_root, settings.simulator_latency_seconds)
