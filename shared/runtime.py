"""The process-wide collaborators that the API and the worker both build from settings."""

from __future__ import annotations

from functools import cached_property

from shared.config import Settings
from shared.db import Database
from shared.media.storage import MediaStorage
from shared.providers import make_provider
from shared.providers.base import VideoProvider


class Runtime:
    def __init__(self, settings: Settings) -> None:
        settings.ensure_local_dirs()
        self.settings = settings
        self.db = Database(settings.database_url)
        self.storage = MediaStorage(settings.media_root)

    @cached_property
    def provider(self) -> VideoProvider:
        """Made on first use: only the worker talks to the provider."""
        return make_provider(self.settings)
