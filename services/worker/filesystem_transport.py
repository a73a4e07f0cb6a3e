"""A workaround for kombu's filesystem transport (the embedded default's broker): a message
is never read half written.

kombu 5.7.0 writes a message by opening its final `….msg` name, taking an advisory lock
and writing. A consumer lists the folder, moves the file away and reads it without taking
the lock, so between the sender's open() and its write() a worker can take an empty or
partial file; decoding it raises, and the worker dies ("Unrecoverable error"). Here the
sender writes under a name no consumer matches and renames it into place, which is atomic:
a consumer sees the whole message or none of it.
"""

from __future__ import annotations

import os
import time
import uuid
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem as kombu_filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(kombu_filesystem.Channel):
    """kombu's filesystem channel, whose messages appear whole."""

    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]  # kombu's own signature
        # kombu's own name: consumers take messages in the order of its millisecond prefix.
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as out:
                out.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


def install() -> None:
    """Make kombu's filesystem transport create our channels (idempotent)."""
    kombu_filesystem.Transport.Channel = Channel
