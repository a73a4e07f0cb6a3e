"""The process-wide collaborators that the API and the worker both build from settings."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config import Settings
from shared.db import Database
from shared.media.storage import MediaStorage
from shared.providers import make_provider
from shared.providers.base import VideoProvider


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    db: Database
    provider: VideoProvider
    storage: MediaStorage


def build_runtime(settings: Settings) -> Runtime:
    settings.ensure_local_dirs()
    return Runtime(
        settings=settings,
        db=Database(settings.database_url),
        provider=make_provider(settings),
        storage=MediaStorage(settings.media_root),
    )
