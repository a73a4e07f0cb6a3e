"""Worker process plumbing: the metrics port, the liveness heartbeat, dead children, the
garbage collector.

The heartbeat is a file touched every few seconds by a thread of the worker's main
process. Kubernetes' liveness probe checks its age, not `celery inspect ping`, which
goes through the broker and would restart every worker during a broker outage.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
from pathlib import Path
from typing import Any

# The database driver, which SQLAlchemy imports only when the first engine is made: here, in
# the main process, it is imported once before the pool forks (and frozen with the rest),
# not in every child at its first task (≈ 0.2 s of CPU each).
import psycopg  # noqa: F401
from celery.signals import setup_logging, worker_init, worker_process_shutdown
from prometheus_client import start_http_server

from shared import logs, metrics
from shared.config import load_settings

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 10.0


def _beat_forever(path: Path, stop: threading.Event) -> None:
    while not stop.is_set():
        path.touch()
        stop.wait(HEARTBEAT_SECONDS)


@setup_logging.connect
def _json_logs(**_: Any) -> None:
    """Replace Celery's own log set-up with ours (one JSON object per line)."""
    settings = load_settings()
    logs.configure(settings.log_level, json_format=settings.log_json)


@worker_init.connect
def _start_process_services(sender: Any = None, **_: Any) -> None:
    settings = sender.app.naive_settings
    metrics.reset_multiprocess_dir()
    if settings.worker_metrics_port is not None:
        start_http_server(settings.worker_metrics_port, registry=metrics.registry())
        log.info("worker metrics on port %d", settings.worker_metrics_port)
    if settings.worker_heartbeat_file is not None:
        stop = threading.Event()
        threading.Thread(
            target=_beat_forever,
            args=(settings.worker_heartbeat_file, stop),
            daemon=True,
            name="heartbeat",
        ).start()


@worker_init.connect
def _freeze_startup_objects(**_: Any) -> None:
    """The task modules are imported and the pool not yet forked: their objects leave the
    collector's generations, so a full collection in a child no longer walks them (≈ 0.1 s
    each, every few thousand tasks) nor writes to their pages, which stay shared with this
    process."""
    gc.freeze()


@worker_process_shutdown.connect
def _forget_dead_child(pid: int | None = None, **_: Any) -> None:
    metrics.mark_process_dead(pid or os.getpid())
