"""When to ask the provider again: when the render is likely done, then in short steps.

The first poll waits for the render's expected time (what the provider says it takes,
else what recent jobs of the model took, read at most once a minute per process), with
jitter around it rather than below it. The same measure is what customers see as a job's
`estimated_seconds`, from its 202 on. The catalog's estimate alone is a guess, not a
measurement: it is trusted up to the poll cap. Past the expected time, steps start short
and grow to a cap. A job still in the provider's queue waits a step per job ahead of it.
With provider webhooks on, the callback is the fast path and polling only the safety
net: every wait is `WEBHOOK_POLL_SLOWDOWN` times longer (still far below the broker's
visibility timeout, which the settings check). Polls sent together (a batch) are those
due within `BATCH_SPREAD` of each other, sent for the last of them.
"""

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from shared.config import WEBHOOK_POLL_SLOWDOWN, Settings

GROWTH = 1.6
# Past the expected time, the first step is this share of it (a 2 s render is polled
# again 0.25 s later, a 60 s one 6 s later), at least MIN_STEP and at most the initial.
STEP_SHARE = 0.1
MIN_STEP = 0.25
# The expected time is hit at 100-110 %: a poll just after the end finds the video.
JITTER = (1.0, 1.1)
# Polls sent together in one batch message fall due within this long of each other: the
# message waits for the last of them, so none is polled before its time and none is late
# by more than this (and a first poll still lands at or after the expected render time).
BATCH_SPREAD = 0.25

# Recent render times are read at most this often per model and process.
RECENT_RENDERS_TTL = 60.0
_recent_renders: dict[str, tuple[float, list[float]]] = {}  # model → (read at, seconds)

T = TypeVar("T")


def backoff_seconds(attempt: int, *, initial: float, cap: float) -> float:
    """Exponential from `initial` to `cap`, less up to 20 % of jitter so loops spread out."""
    base = min(cap, initial * GROWTH ** min(attempt, 64))
    return round(base * random.uniform(0.8, 1.0), 3)


def poll_wait(
    settings: Settings,
    *,
    expected_seconds: float,
    elapsed_seconds: float,
    polls_past_expected: int,
    queue_position: int | None,
    webhooks_enabled: bool,
) -> float:
    """Seconds until the next status call of a job whose render started `elapsed_seconds`
    ago and is expected to take `expected_seconds`."""
    slowdown = WEBHOOK_POLL_SLOWDOWN if webhooks_enabled else 1
    remaining = expected_seconds - elapsed_seconds
    if remaining > 0 and not queue_position:
        return round(remaining * random.uniform(*JITTER) * slowdown, 3)
    step = min(settings.poll_initial_seconds, max(MIN_STEP, expected_seconds * STEP_SHARE))
    cap = settings.poll_max_seconds * slowdown
    wait = backoff_seconds(polls_past_expected, initial=step * slowdown, cap=cap)
    if queue_position:
        wait = min(cap, max(wait, step * queue_position * slowdown))
    return wait


def measured_render_seconds(
    *, provider_says: float | None, recent: Sequence[float]
) -> float | None:
    """The provider's own figure if it gives one; else the median of recent renders of the
    model (at least three); else None: nothing measured yet."""
    if provider_says is not None:
        return provider_says
    if len(recent) >= 3:
        return statistics.median(recent)
    return None


def recent_renders(model: str, read: Callable[[], list[float]]) -> list[float]:
    """How long the model's recent renders took, as `read` returns it: at most once per
    `RECENT_RENDERS_TTL` in this process, else as last read."""
    read_at, seconds = _recent_renders.get(model, (-RECENT_RENDERS_TTL, []))
    if time.monotonic() - read_at >= RECENT_RENDERS_TTL:
        seconds = read()
        _recent_renders[model] = (time.monotonic(), seconds)
    return seconds


def estimated_seconds(measured: float | None, *, estimate: int) -> int:
    """What customers see as a job's `estimated_seconds`: a measured render time, rounded
    up, beats an estimate (the catalog's, or the one the job was given)."""
    return max(1, math.ceil(measured)) if measured else estimate


def pacing_seconds(measured: float | None, *, catalog_seconds: float, settings: Settings) -> float:
    """The render time polls are paced by: the measured one, else the catalog's guess but no
    more than the poll cap (a model slower than its estimate is polled at the cap anyway)."""
    if measured is not None:
        return measured
    return min(catalog_seconds, settings.poll_max_seconds)


def poll_batches(due: Sequence[tuple[T, float]], *, size: int) -> list[tuple[list[T], float]]:
    """Group polls due in the given seconds from now into batches of at most `size`, each
    spanning at most `BATCH_SPREAD`, earliest first; each batch with its countdown, the
    wait for the last poll in it (never negative: an overdue poll goes at once)."""
    batches: list[tuple[list[T], float]] = []
    items: list[T] = []
    first = last = 0.0
    for item, wait in sorted(due, key=lambda pair: pair[1]):
        if items and (len(items) >= size or wait - first > BATCH_SPREAD):
            batches.append((items, max(0.0, last)))
            items = []
        if not items:
            first = wait
        items.append(item)
        last = wait
    if items:
        batches.append((items, max(0.0, last)))
    return batches
