"""Every call to fal ends by its deadline, and a submit goes out once: our fal provider,
with the real fal-client under it, against the fake fal server over HTTPS, in a process of
its own (tests/fal_provider_driver.py).

fal-client tries each call up to ten times, after timeouts and dropped connections too:
without the deadline's hooks a submit whose answer is late went to fal ten times (ten
renders billed to us), and a status call that stalls held its thread for minutes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fake_fal import FakeFalServer
from tests.helpers import tagged
from tests.stack import fal_env

ROOT = Path(__file__).resolve().parent.parent
DRIVER = "tests.fal_provider_driver"
WAN = "fal-ai/wan/v2.7/text-to-video"
DEADLINE = 1.0  # every call's, in these tests (8 s for a status call in production)
SLACK = 1.0  # what a call may take beyond its deadline: the last attempt's TLS, a sleep


def drive(fake: FakeFalServer, env: dict[str, str], steps: list[dict[str, Any]]) -> list[Any]:
    command = json.dumps({"deadline": DEADLINE, "steps": steps})
    done = subprocess.run(
        [sys.executable, "-m", DRIVER, command],
        cwd=ROOT,
        env={**env, **fal_env(fake)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.splitlines()[-1])


def requests_at_fal(fake: FakeFalServer, prompt: str) -> int:
    """How many requests fal made of submits with this prompt (directives and all)."""
    stats = httpx.get(f"{fake.base_url}/_fake/stats").json()  # trusted: SSL_CERT_FILE
    return sum(prompt in json.dumps(r["arguments"]) for r in stats["requests"].values())


@pytest.fixture
def env(test_env: dict[str, str]) -> dict[str, str]:
    return {**test_env, "PYTHONPATH": str(ROOT)}


def test_a_submit_whose_answer_is_late_goes_to_fal_once_and_its_outcome_is_unknown(
    fake_fal: FakeFalServer, env: dict[str, str]
) -> None:
    prompt = tagged("Late answer [fal submit_delay=3]")
    [step] = drive(fake_fal, env, [{"op": "submit", "model": WAN, "arguments": {"prompt": prompt}}])
    assert step["error"]["class"] == "SubmitOutcomeUnknown", step
    assert step["seconds"] < DEADLINE + SLACK
    assert requests_at_fal(fake_fal, prompt) == 1  # not sent again: one render, not ten


@pytest.mark.parametrize("refusal", ["submit=429x2", "submit=503-ingressx1"])
def test_a_submit_refused_before_fal_took_it_is_sent_again(
    fake_fal: FakeFalServer, env: dict[str, str], refusal: str
) -> None:
    prompt = tagged(f"Refused at first [fal {refusal}]")
    [step] = drive(fake_fal, env, [{"op": "submit", "model": WAN, "arguments": {"prompt": prompt}}])
    assert "ok" in step, step
    assert requests_at_fal(fake_fal, prompt) == 1


@pytest.mark.parametrize("stall", ["status_delay=3", "status_drip=0.05"])
def test_a_status_call_that_stalls_or_trickles_ends_at_its_deadline(
    fake_fal: FakeFalServer, env: dict[str, str], stall: str
) -> None:
    prompt = tagged(f"Stalling status [fal {stall}]")
    submit = {"op": "submit", "model": WAN, "arguments": {"prompt": prompt}}
    status = {"op": "status", "model": WAN, "request_id": "$last"}
    submitted, asked = drive(fake_fal, env, [submit, status])
    assert "ok" in submitted, submitted
    unavailable = {"class": "ProviderUnavailable", "message": "fal did not answer in time"}
    assert asked["error"] == unavailable
    assert asked["seconds"] < DEADLINE + SLACK  # not 120 s a read, ten times over


def test_a_status_call_answered_in_time_reads_as_before(
    fake_fal: FakeFalServer, env: dict[str, str]
) -> None:
    submit = {"op": "submit", "model": WAN, "arguments": {"prompt": tagged("Quick")}}
    status = {"op": "status", "model": WAN, "request_id": "$last"}
    _, asked = drive(fake_fal, env, [submit, status])
    assert asked["ok"]["state"] in ("queued", "running"), asked
