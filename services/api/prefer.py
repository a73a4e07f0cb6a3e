"""`Prefer: wait=N` (RFC 7240): an answer that waits up to N seconds for its job to end.

The wait re-reads the job's row at a short, slowly growing interval (0.2 s, then up to
0.5 s), each read its own short transaction: between reads the request holds no database
connection and no lock, only its greenlet and its socket. Under gunicorn's gevent worker
`time.sleep` and `select.select` are gevent's (the worker monkey-patches the process
before the app is imported), so a waiting request yields to every other one.

Why reads and not LISTEN/NOTIFY: a listener is a connection held open per process, a task
to route notifications to waiting requests, and a second path on SQLite, which has no
notifications; a read by primary key every half second costs PostgreSQL little, and a
customer waiting on a render of tens of seconds gains nothing from a faster wake-up. The
row, not the job's events, is read: its final event is written in the transaction that
makes the row final, so both say the same, and the row is one read by primary key.

Under gunicorn the wait also watches the client's socket: a client that hangs up ends the
wait at once (its answer goes nowhere), so a disconnected client costs no more reads.

Values: `wait=N` with N a whole number of seconds; N above 60 waits 60 (RFC 7240 makes
`wait` the client's upper bound, and `Preference-Applied: wait=60` says what was applied).
`wait=0`, a negative, fractional or non-numeric value, and every other preference are
ignored, as RFC 7240 asks: the answer is then today's, with no `Preference-Applied`.
"""

from __future__ import annotations

import select
import socket
import time
from typing import Any

from flask import request

from services.api import context
from services.api.contract import Param, Schema
from shared.jobs import service as jobs
from shared.jobs.models import Job

MAX_WAIT_SECONDS = 60
FIRST_READ_SECONDS = 0.2
LAST_READ_SECONDS = 0.5
READ_GROWTH = 1.25

WAIT = Param(
    "header",
    "Prefer",
    # Any string: a value that is not `wait=N` is ignored, never refused.
    {"type": "string"},
    "`wait=N` (RFC 7240): answer once the job is completed, failed or cancelled, or after N "
    "seconds (1 to 60; more waits 60), whichever comes first. Other preferences and "
    "malformed values are ignored.",
)
APPLIED_HEADER: dict[str, Schema] = {
    "Preference-Applied": {
        "description": "`wait=N`, the wait applied, when the request asked for one.",
        "schema": {"type": "string", "pattern": "^wait=[0-9]+$"},
    }
}


def requested_wait() -> int | None:
    """The request's `Prefer: wait=N` in seconds (at most 60), or None if absent or bad.

    Several `Prefer` headers count as one list; only the first `wait` counts (RFC 7240 §2),
    its name in any case, its value a token or a quoted string."""
    for preference in ",".join(request.headers.getlist("Prefer")).split(","):
        name, equals, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() != "wait":
            continue
        digits = value.strip().removeprefix('"').removesuffix('"') if equals else ""
        if not digits.isascii() or not digits.isdigit():
            return None
        significant = digits.lstrip("0")
        if not significant:
            return None
        return MAX_WAIT_SECONDS if len(significant) > 2 else min(int(significant), MAX_WAIT_SECONDS)
    return None


def applied(seconds: int) -> dict[str, str]:
    """The answer's header saying the wait was honoured (whatever the job's state)."""
    return {"Preference-Applied": f"wait={seconds}"}


def until_final(job: Job, seconds: int) -> Job:
    """`job` as it is once final, or after `seconds`, or once the client has hung up."""
    deadline = time.monotonic() + seconds
    interval = FIRST_READ_SECONDS
    client = ClientSocket(request.environ.get("gunicorn.socket"))
    while not job.status.is_terminal:
        left = deadline - time.monotonic()
        if left <= 0 or not client.still_there_after(min(interval, left)):
            break
        with context.runtime().db.transaction() as session:
            job = jobs.get_job(session=session, account_id=job.account_id, job_id=str(job.id))
        interval = min(interval * READ_GROWTH, LAST_READ_SECONDS)
    return job


class ClientSocket:
    """The waiting request's client connection, when the server exposes it (gunicorn puts
    it in the WSGI environ; the test client and werkzeug's server do not)."""

    def __init__(self, sock: Any) -> None:
        self.sock: socket.socket | None = sock if isinstance(sock, socket.socket) else None

    def still_there_after(self, seconds: float) -> bool:
        """Wait `seconds`; False as soon as the client has closed its connection."""
        if self.sock is None:
            time.sleep(seconds)
            return True
        try:
            readable, _, _ = select.select([self.sock], [], [], seconds)
            # A client sends nothing more while it waits for this answer: readable means
            # it hung up (an empty read), or it pipelined its next request.
            if readable and not self.sock.recv(1, socket.MSG_PEEK):
                return False
        except (OSError, ValueError):  # reset, or closed under us
            return False
        if readable:
            self.sock = None  # pipelined bytes stay readable: sleep from now on
        return True
