"""gunicorn settings: prometheus-client's multiprocess bookkeeping for the API's workers."""

from typing import Any

from shared.metrics import mark_process_dead, reset_multiprocess_dir

graceful_timeout = 25  # below Kubernetes' 30 s terminationGracePeriodSeconds


def on_starting(server: Any) -> None:
    reset_multiprocess_dir()


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)
