"""The command line of each process in the `Procfile`, written once.

The Procfile gives them to a platform; `naive local up`, the tests and the benches start
the same command lines from Python (`python_m` runs them with this interpreter, so no
`PATH` is needed). `tests/test_processes.py` checks that the Procfile and these agree.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

API_APP = "services.api.wsgi:app"
CELERY_APP = "services.worker.app"


def release() -> list[str]:
    """The Procfile's `release`: migrations, before a new version serves."""
    return ["naive", "admin", "migrate"]


def api(*, bind: str, metrics_bind: str, workers: int, app: str = API_APP) -> list[str]:
    """The Procfile's `api`: `app` under gunicorn (our config: hooks, metrics, error pages).

    gevent workers: a connection is a greenlet, so clients slow to send a body (or, later,
    event streams held open) cost a greenlet each, not a worker; `--worker-connections` caps
    them per worker. `metrics_bind` is the metrics listener (API_METRICS_PORT's address)."""
    return [
        "gunicorn",
        "--config",
        "python:services.api.gunicorn_conf",
        "--worker-class",
        "gevent",
        "--worker-connections",
        "1000",
        "--bind",
        bind,
        "--bind",
        metrics_bind,
        "--workers",
        str(workers),
        "--access-logfile",
        "-",
        app,
    ]


def worker(*, concurrency: int, app: str = CELERY_APP) -> list[str]:
    """The Procfile's `worker`: a prefork Celery worker. Gossip and mingle are off: workers
    need nothing from each other, and at start-up they only cost broker round trips."""
    return [
        "celery",
        "-A",
        app,
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--without-gossip",
        "--without-mingle",
    ]


def beat(*, schedule: str | Path, app: str = CELERY_APP) -> list[str]:
    """The Procfile's `beat` (exactly one replica): the dispatcher's clock."""
    return ["celery", "-A", app, "beat", "--loglevel", "INFO", "--schedule", str(schedule)]


def python_m(argv: Sequence[str]) -> list[str]:
    """`gunicorn …` as `python -m gunicorn …` with this interpreter (a venv not on PATH)."""
    program, *arguments = argv
    module = "services.cli.main" if program == "naive" else program
    return [sys.executable, "-m", module, *arguments]
