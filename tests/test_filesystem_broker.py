"""The embedded default's broker (kombu's filesystem transport) never hands a worker a
message that is still being written: one that did decoded as broken JSON and the worker
died with "Unrecoverable error" (seen by the quick start under load)."""

from __future__ import annotations

import threading
from pathlib import Path
from queue import Empty
from typing import Any

from services.worker.celery_app import make_celery
from shared.config import load_settings

BIG = {"body": "x" * 40_000_000}  # long enough to write that a reader polls meanwhile


def test_a_message_is_never_read_half_written(tmp_path: Path) -> None:
    app = make_celery(load_settings({"NAIVE_DATA_DIR": str(tmp_path)}))
    with app.connection_for_write() as sender, app.connection_for_read() as receiver:
        writer = threading.Thread(target=sender.default_channel._put, args=("race", BIG))
        received: list[Any] = []
        writer.start()
        while not received:
            try:
                received.append(receiver.default_channel._get("race"))
            except Empty:
                continue
        writer.join()
    assert received == [BIG]
