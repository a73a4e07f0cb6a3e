"""A Celery app with cProfile on in every process of the worker (py-spy does not run on
this machine): `celery -A bench.worker_profile worker …`, the Procfile's flags. The app is
the product's, or the one of the module `$BENCH_PROFILED_APP` names (`bench.fair_floor`).

The main process (the consumer: receiving, countdowns, acknowledgements, the pool's pipes)
and each pool child write `$BENCH_PROFILE_DIR/{main,child}-<pid>.prof` (CPU time) when they
stop;
`bench.harness.summarize_cprofile` prints where each kind spent its CPU.
"""

from __future__ import annotations

import cProfile
import importlib
import os
import time
from pathlib import Path
from typing import Any

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_shutdown,
)

from services.processes import CELERY_APP

app = importlib.import_module(os.environ.get("BENCH_PROFILED_APP", CELERY_APP)).app

__all__ = ["app"]

# CPU time, not wall time: waiting for work or for PostgreSQL is not cost.
_profile = cProfile.Profile(time.process_time)


def _folder() -> Path:
    return Path(os.environ["BENCH_PROFILE_DIR"])


@worker_init.connect
def _profile_main(**_: Any) -> None:
    _profile.enable()


@worker_shutdown.connect
def _dump_main(**_: Any) -> None:
    _profile.disable()
    _profile.dump_stats(_folder() / f"main-{os.getpid()}.prof")


@worker_process_init.connect
def _profile_child(**_: Any) -> None:
    # A fork inherits the parent's profiler state: start the child's own from zero.
    global _profile
    _profile.disable()
    _profile = cProfile.Profile(time.process_time)
    _profile.enable()


@worker_process_shutdown.connect
def _dump_child(**_: Any) -> None:
    _profile.disable()
    _profile.dump_stats(_folder() / f"child-{os.getpid()}.prof")
