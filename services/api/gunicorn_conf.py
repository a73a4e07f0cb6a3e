"""gunicorn settings for the API: prometheus-client's multiprocess bookkeeping, an access
log without query strings, and gunicorn's own error pages in our JSON error shape.

The worker class (gevent, on the command line: `services.processes.api`) is chosen for
clients that are slow to send: each connection is a greenlet, so a client that sends
half a body and waits holds a greenlet, not a worker. Nothing here may import psycopg:
it would pick its blocking wait function in the arbiter, before gevent patches `select`
in each worker, and every query would then block a whole worker.
"""

import gc
import json
import warnings
from typing import Any

from gevent.monkey import MonkeyPatchWarning
from gunicorn import util

from services.api.errors import HTTP_CODES
from shared.errors import error_body
from shared.metrics import mark_process_dead, reset_multiprocess_dir

# gunicorn imports ssl before any worker patches it, so gevent warns in every worker. The
# modules that use TLS (redis, botocore, httpx) are imported after the patch, in the worker,
# and gunicorn serves no TLS of its own here (it ends at the load balancer).
warnings.filterwarnings("ignore", category=MonkeyPatchWarning)

graceful_timeout = 25  # below Kubernetes' 30 s terminationGracePeriodSeconds
# The path without its query string: signed media URLs carry a week-long token there.
access_log_format = '%(h)s - %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms "%(a)s"'


def on_starting(server: Any) -> None:
    reset_multiprocess_dir()


def post_worker_init(worker: Any) -> None:
    # The app is loaded: its modules' objects leave the collector's generations, so a full
    # collection no longer walks them (≈ 0.1 s each, every few thousand requests: 5 % of
    # a submit's CPU on average).
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    mark_process_dead(worker.pid)


def write_json_error(sock: Any, status: int, reason: str, message: str) -> None:
    """gunicorn's answer to a request it refused before the app saw it (a bad request line,
    a URI or headers over its limits, a crash below the app), in the one error shape.

    gunicorn offers no hook for these pages; its workers call `gunicorn.util.write_error`,
    which this replaces (tests/test_hostile_api.py checks 400, 414 and 431 stay JSON)."""
    code = HTTP_CODES.get(status, "http_error")
    body = json.dumps(error_body(code, message or reason)).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin1") + body)


util.write_error = write_json_error
