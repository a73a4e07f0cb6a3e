"""Media storage: a local folder (`MEDIA_ROOT`); keys look like `videos/<account>/<job>.mp4`."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class MediaStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        """The file for a key; keys never leave the root."""
        path = (self.root / key).resolve()
        if not path.is_relative_to(self.root):
            raise ValueError(f"storage key escapes the media root: {key!r}")
        return path

    def put(self, key: str, source: Path) -> None:
        """Store `source` under `key` atomically: readers see the old file or the whole new one."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        with (
            tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as handle,
            source.open("rb") as src,
        ):
            shutil.copyfileobj(src, handle)
        os.replace(handle.name, target)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()
