"""Smoke test of the embedded default: no database server, no broker server, the simulator.

Runs what the README's quick start runs (`naive local up`, then the spec's CLI line)
in a fresh data folder with none of the production variables set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from shared.media.probe import probe_video
from tests.stack import free_port

PRODUCTION_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "MEDIA_ROOT",
    "NAIVE_API_KEY",
    "NAIVE_API_URL",
)


def test_the_quick_start_makes_a_playable_video_with_no_servers(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    env.update(NAIVE_DATA_DIR=str(tmp_path / "var"), SIMULATOR_LATENCY_SECONDS="2")
    naive = [sys.executable, "-m", "services.cli.main"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*naive, *args], env=env, capture_output=True, text=True, timeout=180, check=False
        )

    try:
        started = run("local", "up", "--port", str(free_port()))
        assert started.returncode == 0, started.stdout + started.stderr
        output = tmp_path / "golden.mp4"
        generated = run(
            "video",
            "generate",
            "--model",
            "fal-ai/kling-video/v3/pro/text-to-video",
            "A golden retriever running on a beach at sunset",
            "--duration",
            "5",
            "--wait",
            "--output",
            str(output),
        )
        assert generated.returncode == 0, generated.stdout + generated.stderr
        envelope = json.loads(generated.stdout)
        assert envelope["success"] is True
        assert envelope["result"]["status"] == "completed"
        assert envelope["result"]["credits_used"] == 3.5
        info = probe_video(output)
        assert (info.codec, info.width, info.height) == ("h264", 640, 360)
        assert abs(info.duration_seconds - 5) < 0.1

        credits = json.loads(run("credits").stdout)["result"]
        assert (credits["balance"], credits["held"]) == (96.5, 0.0)
        media = json.loads(run("media", "list", "--source", "video_generation").stdout)
        assert media["result"]["total"] == 1
        assert (tmp_path / "var" / "naive.db").is_file()  # SQLite, not a server
    finally:
        run("local", "down")
