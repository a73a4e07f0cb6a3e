"""The process-wide collaborators that the API and the worker both build from settings."""

from __future__ import annotations

from functools import cached_property

from shared import metrics, tables  # noqa: F401  (the whole schema, for foreign keys)
from shared.config import Settings
from shared.db import Database
from shared.media.storage import MediaStorage, make_storage
from shared.providers import make_provider
from shared.providers.base import VideoProvider


class Runtime:
    def __init__(self, settings: Settings) -> None:
        settings.ensure_local_dirs()
        self.settings = settings
        self.db = Database(settings.database_url)
        metrics.count_database_work(self.db.engine)
        self.storage: MediaStorage = make_storage(settings)

    @cached_property
    def provider(self) -> VideoProvider:
        """Made on first use: only the worker talks to the provider."""
        return make_provider(self.settings)
