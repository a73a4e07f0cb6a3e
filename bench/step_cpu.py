"""The CPU each step of the pipeline costs, without a profiler's distortion:
`celery -A bench.step_cpu worker …` (the Procfile's flags) runs the app the module
`$BENCH_PROFILED_APP` names (the product's, or `bench.fair_floor`), and each pool child
adds up its thread's CPU time (`time.thread_time`) inside each task, by task name.

After every task a child rewrites `$BENCH_PROFILE_DIR/steps-<pid>.json` with its totals so
far (a few tens of µs, after the task's own clock stopped), so the bench can read them
after its warm-up and again at the end, and count only what is between.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun

from services.processes import CELERY_APP

app = importlib.import_module(os.environ.get("BENCH_PROFILED_APP", CELERY_APP)).app

__all__ = ["app", "read_totals"]

_started: dict[str, float] = {}
_totals: defaultdict[str, list[float]] = defaultdict(lambda: [0.0, 0])  # name → [CPU s, runs]


@task_prerun.connect
def _start(task_id: str = "", **_: Any) -> None:
    _started[task_id] = time.thread_time()


@task_postrun.connect
def _stop(task_id: str = "", task: Any = None, **_: Any) -> None:
    started = _started.pop(task_id, None)
    if started is None or task is None:
        return
    total = _totals[task.name]
    total[0] += time.thread_time() - started
    total[1] += 1
    path = Path(os.environ["BENCH_PROFILE_DIR"]) / f"steps-{os.getpid()}.json"
    path.with_suffix(".tmp").write_text(json.dumps(_totals))
    path.with_suffix(".tmp").replace(path)


def read_totals(folder: Path) -> dict[str, tuple[float, int]]:
    """Every child's totals so far, added up: task name → (CPU seconds, runs)."""
    totals: dict[str, tuple[float, int]] = {}
    for path in folder.glob("steps-*.json"):
        for name, (seconds, runs) in json.loads(path.read_text()).items():
            before = totals.get(name, (0.0, 0))
            totals[name] = (before[0] + seconds, before[1] + int(runs))
    return totals
