"""Poll pacing and the settings' guard rails (pure functions: no services needed)."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_settings
from shared.jobs.pacing import backoff_seconds


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
    assert settings.broker_url == "filesystem://"
    assert settings.provider == "simulator"
