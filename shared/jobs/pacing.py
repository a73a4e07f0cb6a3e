"""How long a task waits before it asks again: short at first, growing with jitter to a cap."""

import random

from shared.config import WEBHOOK_POLL_SLOWDOWN, Settings

GROWTH = 1.6


def backoff_seconds(attempt: int, *, initial: float, cap: float) -> float:
    """Exponential from `initial` to `cap`, less up to 20 % of jitter so loops spread out."""
    base = min(cap, initial * GROWTH ** min(attempt, 64))
    return round(base * random.uniform(0.8, 1.0), 3)


def poll_wait(
    attempt: int, settings: Settings, *, estimated_seconds: int, webhooks_enabled: bool
) -> float:
    """The wait before the next status call of a job.

    With provider webhooks on, the callback is the fast path and polling only the safety
    net for a lost one: the first poll waits half the model's usual render time and the
    cap is `WEBHOOK_POLL_SLOWDOWN` times higher (still far below the broker's visibility
    timeout, which the settings check).
    """
    if not webhooks_enabled:
        return backoff_seconds(
            attempt, initial=settings.poll_initial_seconds, cap=settings.poll_max_seconds
        )
    cap = settings.poll_max_seconds * WEBHOOK_POLL_SLOWDOWN
    initial = min(cap, max(settings.poll_initial_seconds, estimated_seconds / 2))
    return backoff_seconds(attempt, initial=initial, cap=cap)
