"""How long a task waits before it asks again: short at first, growing with jitter to a cap."""

import random

GROWTH = 1.6


def backoff_seconds(attempt: int, *, initial: float, cap: float) -> float:
    """Exponential from `initial` to `cap`, less up to 20 % of jitter so loops spread out."""
    base = min(cap, initial * GROWTH ** min(attempt, 64))
    return round(base * random.uniform(0.8, 1.0), 3)
