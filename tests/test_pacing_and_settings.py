"""Poll pacing and the settings' guard rails (pure functions: no services needed)."""

from __future__ import annotations

from typing import Any

import pytest

from shared.config import ConfigError, load_settings
from shared.jobs.pacing import (
    BATCH_SPREAD,
    backoff_seconds,
    estimated_seconds,
    measured_render_seconds,
    pacing_seconds,
    poll_batches,
    poll_wait,
)


def test_poll_backoff_starts_short_grows_and_stops_at_the_cap():
    waits = [backoff_seconds(n, initial=2, cap=15) for n in range(12)]
    assert 1.6 <= waits[0] <= 2
    assert waits[3] > waits[0]
    assert all(wait <= 15 for wait in waits)
    assert waits[-1] >= 12  # at the cap, less jitter


def test_poll_backoff_is_jittered():
    assert len({backoff_seconds(5, initial=2, cap=15) for _ in range(20)}) > 1


def test_settings_refuse_poll_waits_near_the_visibility_timeout():
    with pytest.raises(ConfigError, match="VISIBILITY_TIMEOUT"):
        load_settings(
            {
                "POLL_MAX_SECONDS": "1000",
                "VISIBILITY_TIMEOUT_SECONDS": "3600",
            }
        )


def test_settings_refuse_an_unknown_provider():
    with pytest.raises(ConfigError, match="NAIVE_PROVIDER"):
        load_settings({"NAIVE_PROVIDER": "runway"})


def test_embedded_default_needs_no_server(tmp_path):
    settings = load_settings({"NAIVE_DATA_DIR": str(tmp_path)})
    assert settings.database_url == f"sqlite:///{tmp_path / 'naive.db'}"
    assert settings.broker_url == "filesystem://localhost/"
    assert settings.provider == "simulator"


def _wait(**given: Any) -> float:
    defaults: dict[str, Any] = {
        "expected_seconds": 2.0,
        "elapsed_seconds": 0.0,
        "polls_past_expected": 0,
        "queue_position": None,
        "webhooks_enabled": False,
    }
    return poll_wait(load_settings({}), **{**defaults, **given})


def test_the_first_poll_waits_for_the_render_and_never_lands_before_it() -> None:
    waits = [_wait(expected_seconds=2.0) for _ in range(200)]
    assert min(waits) >= 2.0 and max(waits) <= 2.2
    assert 8.0 <= _wait(expected_seconds=10.0, elapsed_seconds=2.0) <= 8.8


def test_past_the_expected_time_steps_start_short_and_grow_to_the_cap() -> None:
    settings = load_settings({})
    first = _wait(expected_seconds=2.0, elapsed_seconds=2.1)
    assert 0.2 <= first <= 0.25  # a tenth of the render, at least MIN_STEP
    later = [_wait(elapsed_seconds=30, polls_past_expected=n) for n in range(20)]
    assert later[5] > first and max(later) <= settings.poll_max_seconds


def test_a_queued_job_waits_a_step_per_job_ahead() -> None:
    assert _wait(expected_seconds=60, queue_position=3) >= 3 * 2.0  # step = 2 s, initial
    assert _wait(expected_seconds=60, queue_position=500) <= load_settings({}).poll_max_seconds


def test_with_webhooks_safety_polls_are_rarer() -> None:
    assert _wait(expected_seconds=2.0, webhooks_enabled=True) >= 6.0


def test_the_render_time_is_the_providers_word_then_recent_renders_then_a_capped_guess() -> None:
    assert measured_render_seconds(provider_says=2.0, recent=[9, 9, 9]) == 2
    assert measured_render_seconds(provider_says=None, recent=[4, 5, 30]) == 5
    assert measured_render_seconds(provider_says=None, recent=[4, 5]) is None
    settings = load_settings({})
    assert pacing_seconds(5.0, catalog_seconds=60, settings=settings) == 5
    assert pacing_seconds(None, catalog_seconds=60, settings=settings) == settings.poll_max_seconds
    assert pacing_seconds(None, catalog_seconds=8, settings=settings) == 8


def test_customers_see_a_measured_render_time_rounded_up_else_the_catalogs() -> None:
    assert estimated_seconds(4.2, estimate=60) == 5
    assert estimated_seconds(0.3, estimate=60) == 1
    assert estimated_seconds(None, estimate=60) == 60


def test_polls_are_batched_by_size_and_due_time_and_sent_for_the_last_of_each():
    due = [("c", 0.6), ("a", 0.1), ("b", 0.2), ("d", 0.65), ("e", 0.7), ("late", -3.0)]
    assert poll_batches(due, size=3) == [
        (["late"], 0.0),  # overdue: at once, with no one due later waiting for it
        (["a", "b"], 0.2),  # within BATCH_SPREAD of each other, sent for the later one
        (["c", "d", "e"], 0.7),
    ]
    singles = [ids for ids, _ in poll_batches(due, size=1)]
    assert singles == [["late"], ["a"], ["b"], ["c"], ["d"], ["e"]]
    assert poll_batches([], size=100) == []
    steady = [(n, n * BATCH_SPREAD / 8) for n in range(100)]  # 8 polls per spread
    assert [len(ids) for ids, _ in poll_batches(steady, size=100)] == [9] * 11 + [1]


def test_settings_read_the_poll_batch_size():
    assert load_settings({}).poll_batch_size == 100
    assert load_settings({"POLL_BATCH_SIZE": "20"}).poll_batch_size == 20
    with pytest.raises(ConfigError, match="POLL_BATCH_SIZE"):
        load_settings({"POLL_BATCH_SIZE": "0"})
