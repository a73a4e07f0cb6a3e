"""The `naive` CLI against the real stack: both output modes, exit codes, --wait, Ctrl-C.

JSON mode runs the CLI as a subprocess with a pipe for stdout (so it prints one envelope);
human mode runs it in a real pseudo-terminal with `pexpect` and checks the visible text.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pexpect
import pytest
from click.testing import CliRunner
from werkzeug.exceptions import NotFound

from services.cli.client import ApiClient
from services.cli.main import cli
from services.cli.wait import until_batch_ends
from shared.jobs.schemas import IDEMPOTENCY_KEY_RULE, MAX_IDEMPOTENCY_KEY
from shared.ledger import service as ledger
from shared.media.probe import probe_video
from shared.webhooks.models import WebhookSubscription
from tests.helpers import KLING_I2V, KLING_T2V, job_entries
from tests.stack import serving

# The receiver and the dispatcher's ticks of the webhook tests, used by name.
from tests.test_customer_webhooks import Receiver, dispatching, receiver  # noqa: F401
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
NAIVE = [sys.executable, "-m", "services.cli.main"]
ENVELOPE_KEYS = {"success", "action", "result", "next_steps", "hints"}
# Colours, cursor moves and line clears: what a terminal shows is what is left.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[()][0-9A-B]")
JOB_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def visible(output: str) -> str:
    return ANSI.sub("", output).replace("\r", "")


class Naive:
    """Runs `naive` for one account: `json(...)` through a pipe, `tty(...)` in a terminal."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd

    def json(self, *args: str, timeout: float = 60) -> tuple[int, dict[str, Any]]:
        proc = subprocess.run(
            [*NAIVE, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        envelope = json.loads(proc.stdout)
        assert set(envelope) == ENVELOPE_KEYS, proc.stdout
        assert isinstance(envelope["next_steps"], list)
        assert isinstance(envelope["hints"], list)
        return proc.returncode, envelope

    def stream(self, *args: str, timeout: float = 60) -> tuple[int, list[dict], dict[str, Any]]:
        """A streaming command's output through a pipe: JSON lines, one per item, the
        envelope last."""
        proc = subprocess.run(
            [*NAIVE, *args],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        *items, envelope = [json.loads(line) for line in proc.stdout.splitlines()]
        assert set(envelope) == ENVELOPE_KEYS, proc.stdout
        return proc.returncode, items, envelope

    def spawn(self, *args: str, timeout: float = 60, width: int = 160) -> pexpect.spawn:
        return pexpect.spawn(
            NAIVE[0],
            [*NAIVE[1:], *args],
            env=self.env,
            cwd=str(self.cwd),
            encoding="utf-8",
            timeout=timeout,
            dimensions=(50, width),
        )

    def tty(self, *args: str, timeout: float = 60, width: int = 160) -> tuple[int, str]:
        child = self.spawn(*args, timeout=timeout, width=width)
        output = child.read()
        child.close()
        return child.exitstatus, visible(output)


def _env(api_url: str, key: str, data_dir: Path) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("NAIVE_")}
    return {
        **env,
        "NAIVE_API_URL": api_url,
        "NAIVE_API_KEY": key,
        "NAIVE_DATA_DIR": str(data_dir),  # no `naive local` stack file may interfere
        "TERM": "xterm-256color",
    }


@pytest.fixture
def make_naive(live_api, tmp_path) -> Callable[..., Naive]:
    def make(account: Any, api_url: str = live_api) -> Naive:
        return Naive(_env(api_url, account.key, tmp_path / "naive-data"), tmp_path)

    return make


@pytest.fixture
def naive(make_naive, account) -> Naive:
    return make_naive(account)


def api_job(live_api: str, account: Any, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{live_api}/v1/jobs/{job_id}", headers=account.headers, timeout=10)
    response.raise_for_status()
    return response.json()


def wait_for_status(live_api: str, account: Any, job_id: str, *statuses: str) -> dict:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        last.update(api_job(live_api, account, job_id))
        return dict(last) if last["status"] in statuses else None

    return wait_for(reached, timeout=60, interval=0.2, message=lambda: str(last))


# --- catalog, prices, credits ------------------------------------------------------------


def test_the_help_fits_80_columns_and_names_every_command_group():
    """`naive --help` at an 80-column terminal: no line wraps (the overview's rows ran to 92
    columns, one without a description), and each group is in the overview."""
    result = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert max(len(line) for line in lines) <= 80, [line for line in lines if len(line) > 80]
    overview = result.output.split("Commands at a glance:")[1].split("Add --help")[0]
    rows = overview.strip().splitlines()
    assert all(re.fullmatch(r"\s*naive .+?\S {2,}\S.*", row) for row in rows), rows
    for group in ("video", "jobs", "media", "credits", "budgets", "usage", "webhooks", "local",
                  "mcp", "admin"):  # fmt: skip
        assert f"naive {group}" in overview


@pytest.mark.parametrize(
    "args",
    [
        ("budgets", "set", "--period", "day", "--credits", "abc"),
        ("admin", "grant-credits", "--account", str(uuid.uuid4()), "--credits", "ten"),
        ("admin", "create-account", "--name", "x", "--credits", "1,5"),
        ("admin", "set-budget", "--account", str(uuid.uuid4()), "--period", "day",
         "--credits", "--"),
        ("local", "up", "--credits", "lots"),
    ],
)  # fmt: skip
def test_credits_that_are_not_a_number_are_a_usage_error_not_a_traceback(args):
    """`type=Decimal` let `decimal.InvalidOperation` out of click: a traceback, exit 1."""
    result = CliRunner().invoke(cli, ["--json", *args])
    assert result.exit_code == 2, result.output
    envelope = json.loads(result.output)
    assert envelope["result"]["code"] == "usage_error"
    assert "is not a number" in envelope["result"]["message"]
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("video", "generate", "x", "--wait", "--timeout", "nan"),
        ("jobs", "watch", str(uuid.uuid4()), "--timeout", "inf"),
        ("mcp", "--budget", "nan"),
        ("budgets", "set", "--period", "day", "--credits", "NaN"),
        ("local", "up", "--credits", "Infinity"),
    ],
)
def test_nan_and_infinity_are_refused_as_numbers(args):
    """NaN compares false with every bound: `--timeout nan` waited forever, `--budget nan`
    never refused a job, and a NaN of credits reached the API."""
    result = CliRunner().invoke(cli, ["--json", *args])
    assert result.exit_code == 2, result.output
    envelope = json.loads(result.output)
    assert envelope["result"]["code"] == "usage_error"
    assert "is not a finite number" in envelope["result"]["message"]


@pytest.mark.parametrize(
    ("env", "code"),
    [
        ({"NAIVE_API_KEY": "nv_sk_héllo"}, "invalid_api_key"),
        ({"NAIVE_API_URL": "http://[::1"}, "invalid_api_url"),
    ],
)
@pytest.mark.parametrize("args", [("jobs",), ("credits",), ("mcp",)])
def test_a_key_or_url_no_request_can_carry_is_refused_not_a_traceback(env, code, args, tmp_path):
    """httpx raised UnicodeEncodeError (a key with a non-ASCII character) or InvalidURL (an
    API URL it cannot parse) through the CLI and `naive mcp`: tracebacks, exit 1."""
    env = {"NAIVE_API_URL": "http://127.0.0.1:9", "NAIVE_API_KEY": "nv_sk_x", **env}
    result = CliRunner().invoke(
        cli, ["--json", *args], env={**env, "NAIVE_DATA_DIR": str(tmp_path)}
    )
    assert result.exit_code == 2, result.output
    assert json.loads(result.output)["result"]["code"] == code
    assert "Traceback" not in result.output


def test_a_batch_file_that_is_not_utf8_is_a_usage_error_naming_its_line(tmp_path):
    """read_text raised UnicodeDecodeError through the CLI: a traceback, exit 1."""
    shots = tmp_path / "shots.jsonl"
    shots.write_bytes(b'{"model": "m", "input": {}}\n\xff\xfe\n')
    result = CliRunner().invoke(cli, ["--json", "video", "batch", str(shots)])
    assert result.exit_code == 2, result.output
    message = json.loads(result.output)["result"]["message"]
    assert "line 2: not UTF-8 text" in message


def test_video_models_in_both_modes(naive):
    code, envelope = naive.json("video", "models")
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "video.models")
    ids = [model["id"] for model in envelope["result"]["data"]]
    assert KLING_T2V in ids
    assert envelope["next_steps"][0].startswith("naive video pricing --model ")

    code, screen = naive.tty("video", "models")
    assert code == 0
    assert KLING_T2V in screen
    assert "$0.07/second" in screen
    assert "text-to-video" in screen and "image-to-video" in screen
    assert "$ naive video pricing --model" in screen


def test_video_pricing_of_the_spec_example_is_3_5_credits(naive):
    args = ("video", "pricing", "--model", KLING_T2V, "--duration", "5")
    code, envelope = naive.json(*args)
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "video.pricing")
    quote = envelope["result"]
    assert (quote["model"], quote["duration"], quote["estimated_credits"]) == (KLING_T2V, 5, 3.5)
    assert (quote["unit_price_usd"], quote["credit_value_usd"]) == (0.07, 0.5)
    assert envelope["next_steps"][0].startswith(f"naive video generate --model {KLING_T2V}")

    code, screen = naive.tty(*args)
    assert code == 0
    assert re.search(r"Estimated credits\s+3\.5", screen)
    assert "$0.07/second" in screen and "$0.50" in screen


@pytest.mark.parametrize("model", [KLING_T2V, "fal-ai/minimax-video/video-01-live"])
def test_the_next_step_pricing_suggests_is_accepted(naive, model):
    """The generate command a price preview suggests submits as written (a model priced per
    video takes no duration, neither to price nor to generate)."""
    length = ("--duration", "10") if model == KLING_T2V else ()
    code, envelope = naive.json("video", "pricing", "--model", model, *length)
    assert code == 0, envelope
    suggested = shlex.split(envelope["next_steps"][0])
    assert suggested[:3] == ["naive", "video", "generate"] and suggested[-1] == "--wait"
    words = ["A lantern [sim latency=0.5]" if word == "PROMPT" else word for word in suggested]
    code, envelope = naive.json(*words[1:-1])
    assert code == 0 and envelope["result"]["status"] == "queued", envelope


def test_credits_in_both_modes(naive):
    code, envelope = naive.json("credits")
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "credits")
    result = envelope["result"]
    assert (result["balance"], result["held"], result["available"]) == (100, 0, 100)
    assert [entry["kind"] for entry in result["entries"]] == ["topup"]

    code, screen = naive.tty("credits")
    assert code == 0
    assert re.search(r"Available\s+100 \(\$50\.00\)", screen)
    assert "topup" in screen


def test_credits_pages_the_ledger_as_jobs_pages_jobs(naive, account, runtime):
    """`naive credits --limit N` shows one page of entries and suggests the command for the
    next; following it reaches every entry once."""
    with runtime.db.transaction() as session:
        ledger.top_up(session=session, account_id=account.id, credits=Decimal(1), note="more")
    code, first = naive.json("credits", "--limit", "1")
    assert code == 0 and first["result"]["has_more"] is True
    assert [entry["note"] for entry in first["result"]["entries"]] == ["more"]
    cursor = first["result"]["next_cursor"]
    assert first["next_steps"][0] == f"naive credits --limit 1 --cursor {cursor}"
    code, last = naive.json(*shlex.split(first["next_steps"][0])[1:])
    assert code == 0 and last["result"]["has_more"] is False
    assert [entry["kind"] for entry in last["result"]["entries"]] == ["topup"]
    assert last["result"]["entries"][0]["note"] != "more"
    assert not last["next_steps"][0].startswith("naive credits")

    code, screen = naive.tty("credits", "--limit", "1")
    assert code == 0 and f"$ naive credits --limit 1 --cursor {cursor}" in screen


def test_usage_in_both_modes_and_as_csv(naive, live_api, account):
    accepted = httpx.post(
        f"{live_api}/v1/video/generate",
        json={"model": KLING_T2V, "input": {"prompt": "A kite [sim latency=0.5]"}},
        headers=account.headers,
        timeout=10,
    ).json()
    wait_for_status(live_api, account, accepted["job_id"], "completed")

    code, envelope = naive.json("usage")
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "usage")
    assert envelope["result"]["rows"][0]["group"] == KLING_T2V
    assert envelope["result"]["totals"] == {
        "charged_credits": 3.5,
        "jobs": 1,
        "provider_units": 5.0,
        "provider_cost_usd": 0.35,
        "jobs_without_units": 0,
    }
    assert envelope["next_steps"][0] == "naive usage --group-by day"

    code, screen = naive.tty("usage", "--group-by", "key")
    assert code == 0
    assert re.search(rf"{re.escape(account.key[:12])}\s+1\s+3\.5\s+5\s+\$0\.35", screen)
    # the key's id too, which a key's budget names, and how to set one
    code, envelope = naive.json("usage", "--group-by", "key")
    key_id = envelope["result"]["rows"][0]["group"]
    assert key_id in screen
    assert envelope["next_steps"][-1] == (
        f"naive budgets set --period month --credits N --key-id {key_id}"
    )
    assert re.search(r"Total\s+1\s+3\.5\s+5\s+\$0\.35", screen)

    exported = subprocess.run(
        [*NAIVE, "usage", "--group-by", "day", "--csv"],
        env=naive.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert exported.returncode == 0, exported.stderr
    header, day, total = exported.stdout.splitlines()
    assert header == "day,charged_credits,jobs,provider_units,provider_cost_usd,jobs_without_units"
    assert day.endswith(",3.5,1,5.0,0.35,0") and total == "total,3.5,1,5.0,0.35,0"

    code, envelope = naive.json("usage", "--from", "yesterday")
    assert code == 2
    assert envelope["result"]["code"] == "invalid_input" and "from" in envelope["result"]["fields"]


# --- generating ---------------------------------------------------------------------------


def test_generate_without_wait_returns_the_job_then_status_shows_it(naive, live_api, account):
    code, envelope = naive.json(
        "video", "generate", "--model", KLING_T2V, "A kite [sim latency=0.5]", "--duration", "5"
    )
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "video.generate")
    accepted = envelope["result"]
    job_id = accepted["job_id"]
    assert (accepted["status"], accepted["estimated_credits"]) == ("queued", 3.5)
    assert accepted["hint"].startswith(f"Poll GET /v1/jobs/{job_id}")
    assert envelope["next_steps"] == [f"naive video status {job_id}", f"naive jobs cancel {job_id}"]
    wait_for_status(live_api, account, job_id, "completed")

    code, envelope = naive.json("video", "status", job_id)
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "video.status")
    assert envelope["result"]["status"] == "completed"
    assert envelope["result"]["credits_used"] == 3.5
    asset_id = envelope["result"]["result"]["media_asset_id"]
    assert envelope["next_steps"][0] == f"naive media download {asset_id}"

    code, screen = naive.tty("video", "status", job_id, width=100)
    assert code == 0
    assert f"Job {job_id}" in screen
    assert re.search(r"Status\s+completed", screen)
    assert re.search(r"Credits\s+3\.5", screen)
    url = re.search(r"^(http://\S+/content\?token=\S+)$", screen, re.M).group(1)
    assert httpx.get(url, timeout=30).status_code == 200  # printed whole, though > 100 chars
    code, screen = naive.tty("jobs", "get", job_id)
    assert code == 0 and re.search(r"Progress\s+100%", screen)


def test_generate_wait_in_a_terminal_shows_progress_and_ends_with_url_and_cost(naive):
    # Narrower than the URL: it must still be printed whole, so it can be copied.
    child = naive.spawn(
        "video",
        "generate",
        "--model",
        KLING_T2V,
        "A golden retriever running on a beach at sunset [sim latency=2]",
        "--duration",
        "5",
        "--wait",
        width=100,
    )
    child.expect(rf"Job ({JOB_ID}) queued: about 3\.5 credits")
    job_id = child.match.group(1)
    child.expect("processing")
    child.expect(r"\d+%")
    output = child.read()
    child.close()
    assert child.exitstatus == 0
    screen = visible(output)
    assert "━" in screen  # the bar
    assert "100%" in screen
    assert f"✓ Job {job_id} completed" in screen
    url = re.search(r"^(http://\S+/v1/media/\S+/content\?token=\S+)$", screen, re.M).group(1)
    assert len(url) > 100
    assert re.search(r"KB, 3\.5 credits", screen)
    video = httpx.get(url, timeout=30)  # the signed URL plays without a key, if whole
    assert (video.status_code, video.headers["content-type"]) == (200, "video/mp4")


def test_generate_wait_json_and_output_writes_a_playable_mp4(naive, runtime, tmp_path):
    target = tmp_path / "out" / "retriever.mp4"
    target.parent.mkdir()
    code, envelope = naive.json(
        "video",
        "generate",
        "--model",
        KLING_T2V,
        "A golden retriever [sim latency=1]",
        "--duration",
        "5",
        "--output",
        str(target),
    )
    assert code == 0, envelope
    assert (envelope["success"], envelope["action"]) == (True, "video.generate")
    job = envelope["result"]
    assert (job["status"], job["credits_used"]) == ("completed", 3.5)
    assert job["result"]["video"]["url"]
    assert any(hint.startswith("Saved ") and str(target) in hint for hint in envelope["hints"])
    assert envelope["next_steps"][0] == f"naive media download {job['result']['media_asset_id']}"
    info = probe_video(target)
    assert info.codec == "h264"
    assert info.duration_seconds == pytest.approx(5.0, abs=0.1)
    assert list(target.parent.iterdir()) == [target]  # no .part left behind
    assert job_entries(runtime, job["id"]) == {"hold": [350], "capture": [350]}

    # --output a folder: the video under its own filename there (it was "is a directory")
    code, envelope = naive.json("video", "generate", "--model", KLING_T2V, "A kite [sim "
                                "latency=0.3]", "--output", str(target.parent))  # fmt: skip
    assert code == 0, envelope
    asset_id = envelope["result"]["result"]["media_asset_id"]
    [saved] = [path for path in target.parent.iterdir() if path != target]
    assert saved.name.endswith(f"-{envelope['result']['id'][:8]}.mp4"), saved
    assert any(str(saved.relative_to(tmp_path)) in hint for hint in envelope["hints"])
    code, asset = naive.json("media", "get", asset_id)
    assert asset["result"]["filename"] == saved.name


def test_an_output_that_cannot_be_written_is_refused_before_submitting(
    naive, live_api, account, tmp_path
):
    """`-o /nonexistent/x.mp4` submitted, waited, was charged, then failed to write. (A
    folder that exists is written into, under the video's own filename.)"""
    for output in ("/nonexistent/x.mp4", str(tmp_path / "missing" / "x.mp4")):
        code, envelope = naive.json(
            "video", "generate", "--model", KLING_T2V, "A kite", "--output", output
        )
        assert (code, envelope["result"]["code"]) == (2, "usage_error"), envelope
        assert output in envelope["result"]["message"], envelope
    jobs = httpx.get(f"{live_api}/v1/jobs", headers=account.headers, timeout=10).json()
    assert jobs["data"] == []


def test_a_video_that_could_not_be_saved_names_its_job_and_asset(
    naive, live_api, account, tmp_path
):
    """A save that fails once the job completed (and was charged) said output_error with
    no job id, no asset id, no next step: the video seemed lost. It is in the library."""
    folder = tmp_path / "out"
    folder.mkdir()
    child = naive.spawn(
        "video", "generate", "--model", KLING_T2V, "A kite [sim latency=2]",
        "--output", str(folder / "kite.mp4"), width=400,
    )  # fmt: skip
    child.expect(rf"Job ({JOB_ID}) queued")
    job_id = child.match.group(1)
    folder.rmdir()  # gone before the video is written
    screen = visible(child.read())
    child.close()
    assert child.exitstatus == 2, screen
    asset_id = wait_for_status(live_api, account, job_id, "completed")["result"]["media_asset_id"]
    assert f"Job {job_id} completed" in screen and f"library as {asset_id}" in screen, screen
    assert f"$ naive media download {asset_id} --output FILE" in screen, screen
    assert f"$ naive video status {job_id}" in screen, screen
    target = tmp_path / "kite.mp4"
    code, envelope = naive.json("media", "download", asset_id, "--output", str(target))
    assert code == 0 and probe_video(target).codec == "h264", envelope


def test_a_job_that_fails_with_wait_exits_4(naive):
    prompt = "A storm [sim fail='the provider melted'] [sim latency=0.3]"
    code, envelope = naive.json("video", "generate", "-m", KLING_T2V, prompt, "--wait")
    assert code == 4
    assert (envelope["success"], envelope["action"]) == (False, "video.generate")
    job = envelope["result"]
    assert job["status"] == "failed"
    assert job["error"] == {"code": "provider_error", "message": "the provider melted"}
    assert "Nothing was charged: the credit hold was released." in envelope["hints"]
    assert envelope["next_steps"][0] == f"naive video status {job['id']}"

    code, screen = naive.tty("video", "generate", "-m", KLING_T2V, prompt, "--wait")
    assert code == 4
    assert re.search(rf"Error: Job {JOB_ID} failed: the provider melted \[provider_error\]", screen)
    assert "Nothing was charged" in screen


def test_ctrl_c_during_wait_exits_130_and_the_job_keeps_running(naive, live_api, account):
    child = naive.spawn(
        "video", "generate", "--model", KLING_T2V, "A slow sunrise [sim latency=3]", "--wait"
    )
    child.expect(rf"Job ({JOB_ID}) queued")
    job_id = child.match.group(1)
    child.expect(r"\d+%")  # the live bar is up
    child.sendintr()
    output = child.read()
    child.close()
    assert child.exitstatus == 130
    screen = visible(output)
    assert f"Stopped waiting; job {job_id} keeps running. [interrupted]" in screen
    assert f"$ naive video status {job_id}" in screen
    assert f"$ naive jobs cancel {job_id}" in screen
    done = wait_for_status(live_api, account, job_id, "completed", "failed", "cancelled")
    assert (done["status"], done["credits_used"]) == ("completed", 3.5)


# --- refusals and exit codes -------------------------------------------------------------


def test_an_unknown_model_exits_2_and_suggests_close_ids(naive, live_api, account):
    typo = "fal-ai/kling-video/v3/pro/text-to-vido"
    code, envelope = naive.json("video", "generate", "--model", typo, "A cat")
    assert code == 2
    assert (envelope["success"], envelope["action"]) == (False, "video.generate")
    assert envelope["result"]["code"] == "invalid_model"
    assert KLING_T2V in envelope["result"]["suggestions"]
    assert any(
        hint.startswith("Did you mean: ") and KLING_T2V in hint for hint in envelope["hints"]
    )
    assert envelope["next_steps"] == ["naive video models"]

    code, screen = naive.tty("video", "generate", "--model", typo, "A cat", width=200)
    assert code == 2
    assert f"Error: Unknown model '{typo}'. [invalid_model]" in screen
    assert f"Did you mean: {KLING_T2V}" in screen
    assert "$ naive video models" in screen
    jobs = httpx.get(f"{live_api}/v1/jobs", headers=account.headers).json()["data"]
    assert jobs == []


def test_invalid_input_hints_name_the_field_and_where_to_fix_it(naive, tmp_path):
    """Each bad field is named (with the option that sets it); only a model or input field
    points at the models' parameters, any other at the command's help. Every refusal
    pointed at `naive video models`, a bad Idempotency-Key or page cursor too."""

    def refused(*args: str) -> dict[str, Any]:
        code, envelope = naive.json(*args)
        assert (code, envelope["result"]["code"]) == (2, "invalid_input"), envelope
        return envelope

    # Checked before sending (httpx cannot send "café"); an empty key is refused, not dropped.
    for key in ("k" * (MAX_IDEMPOTENCY_KEY + 1), "café", ""):
        envelope = refused("video", "generate", "-m", KLING_T2V, "A cat", "--idempotency-key", key)
        assert envelope["hints"] == [f"Idempotency-Key (--idempotency-key): {IDEMPOTENCY_KEY_RULE}"]
        assert envelope["next_steps"] == ["naive video generate --help"]

    envelope = refused("jobs", "--cursor", "not-a-cursor")
    assert envelope["hints"] == ["cursor (--cursor): use next_cursor as given"]
    assert envelope["next_steps"] == ["naive jobs --help"]

    envelope = refused("webhooks", "create", "--url", "ftp://example.com/hook")
    assert envelope["hints"] == ["url (--url): must be an https or http URL"]
    assert envelope["next_steps"] == ["naive webhooks create --help"]

    envelope = refused("video", "generate", "-m", KLING_T2V, "A cat", "--aspect-ratio", "2:1")
    assert envelope["hints"][0] == (
        "input.aspect_ratio (--aspect-ratio): must be one of '16:9', '9:16', '1:1'"
    )
    assert "naive video models --json" in envelope["hints"][1]
    assert envelope["next_steps"] == ["naive video models --json"]

    envelope = refused("media", "list", "--source", "uploads")
    assert envelope["hints"] == ["source_type (--source): must be one of video_generation, upload"]

    # A batch's items are named by their lines in the file (here after a blank line).
    shots = tmp_path / "shots.jsonl"
    good = {"model": KLING_T2V, "input": {"prompt": "Dawn"}}
    shots.write_text(
        json.dumps(good) + "\n\n" + json.dumps({**good, "metadata": "not an object"}) + "\n"
    )
    envelope = refused("video", "batch", str(shots))
    assert envelope["hints"] == ["line 3: metadata: Input should be a valid dictionary"]
    assert envelope["next_steps"] == ["naive video batch --help"]
    shots.write_text(json.dumps(good) + "\n\n" + json.dumps({**good, "input": {"x": 1}}) + "\n")
    envelope = refused("video", "batch", str(shots))
    assert "line 3: input.x: is not a parameter of this model" in envelope["hints"]
    assert envelope["next_steps"] == ["naive video models --json"]

    code, screen = naive.tty("jobs", "--cursor", "not-a-cursor")
    assert code == 2 and "cursor (--cursor): use next_cursor as given" in screen
    assert "$ naive jobs --help" in screen and "naive video models" not in screen


def test_insufficient_credits_exits_2_and_points_at_pricing(make_naive, make_account):
    poor = make_naive(make_account("1"))
    args = ("video", "generate", "--model", KLING_T2V, "A cat", "--duration", "5")
    code, envelope = poor.json(*args)
    assert code == 2
    assert envelope["success"] is False
    assert envelope["result"]["code"] == "insufficient_credits"
    assert "This job needs about 3.5 credits; you have 1 available." in envelope["hints"]
    pricing = f"naive video pricing --model {KLING_T2V} --duration 5"
    assert envelope["next_steps"] == [pricing, "naive credits"]

    code, screen = poor.tty(*args)
    assert code == 2
    assert "[insufficient_credits]" in screen
    assert f"$ {pricing}" in screen


def test_connection_refused_exits_3(make_naive, account):
    down = make_naive(account, api_url="http://127.0.0.1:9")
    code, envelope = down.json("video", "models")
    assert code == 3
    assert envelope["success"] is False
    assert envelope["result"]["code"] == "connection_error"
    assert any("Is the API running at http://127.0.0.1:9?" in hint for hint in envelope["hints"])
    # on this machine: the way to start one here, not the Procfile's processes
    assert any("`naive local up` starts the whole stack" in h for h in envelope["hints"])
    assert envelope["next_steps"] == ["naive local status", "naive local up"]

    code, screen = down.tty("credits")
    assert code == 3
    assert "Error: Could not reach http://127.0.0.1:9/v1/credits" in screen
    assert "Is the API running" in screen


def test_usage_errors_exit_2_in_both_modes(naive):
    code, envelope = naive.json("video", "generate", "A cat without a model")
    assert code == 2
    assert envelope["success"] is False
    assert envelope["result"]["code"] == "usage_error"
    assert "--model" in envelope["result"]["message"]

    code, screen = naive.tty("video", "generate", "A cat without a model")
    assert code == 2
    assert "Missing option '--model'" in screen


# --- jobs and media -------------------------------------------------------------------------


def test_tables_in_an_80_column_terminal_print_every_id_whole(naive, account):
    """With COLUMNS=80, in an 80-column terminal, the tables of jobs, media, models and
    the ledger print each row's id whole on one line and no line wider than the terminal
    (the next steps under them are printed unwrapped, to be copied whole)."""
    code, done = naive.json(
        "video", "generate", "--model", KLING_T2V, "A lantern at dusk [sim latency=0.5]", "--wait"
    )
    assert code == 0, done
    job = done["result"]
    code, catalog = naive.json("video", "models")
    assert code == 0
    narrow = Naive({**naive.env, "COLUMNS": "80"}, naive.cwd)
    expected = {
        ("jobs",): [job["id"]],
        ("media", "list"): [job["result"]["media_asset_id"]],
        ("video", "models"): [model["id"] for model in catalog["result"]["data"]],
        ("credits",): [job["id"]],
    }
    for args, ids in expected.items():
        code, screen = narrow.tty(*args, width=80)
        assert code == 0, screen
        table = screen.split("\nNext:")[0].splitlines()
        assert max(len(line.rstrip()) for line in table) <= 80, screen
        for identifier in ids:
            assert any(identifier in line for line in table), f"{identifier}:\n{screen}"
        assert "…" not in screen, screen


def test_jobs_list_and_cancel(naive, live_api, account):
    code, envelope = naive.json("video", "generate", "-m", KLING_T2V, "A stuck clock [sim stall]")
    job_id = envelope["result"]["job_id"]

    code, envelope = naive.json("jobs")
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "jobs.list")
    assert [job["id"] for job in envelope["result"]["data"]] == [job_id]
    code, screen = naive.tty("jobs", width=200)
    assert code == 0 and job_id in screen

    wait_for_status(live_api, account, job_id, "processing")
    code, envelope = naive.json("jobs", "cancel", job_id)
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "jobs.cancel")
    # At the provider: asked to stop, not stopped yet; the CLI says so.
    assert envelope["result"]["id"] == job_id
    assert envelope["result"]["cancel_requested_at"]
    assert envelope["hints"][0].startswith("Cancellation requested")
    assert envelope["next_steps"] == [f"naive video status {job_id}"]
    cancelled = wait_for_status(live_api, account, job_id, "cancelled")
    assert cancelled["credits_used"] is None

    # Cancelling again answers the same; the list filters by status.
    code, screen = naive.tty("jobs", "cancel", job_id)
    assert code == 0
    assert re.search(r"Status\s+cancelled", screen)
    assert "Nothing was charged" in screen
    code, screen = naive.tty("jobs", "--status", "cancelled", width=200)
    assert code == 0 and job_id in screen and "cancelled" in screen
    code, envelope = naive.json("jobs", "--status", "completed")
    assert envelope["result"]["data"] == []
    # `jobs list` as `media list`, `webhooks list`, `budgets list` (it was "No such command")
    code, listed = naive.json("jobs", "list", "--status", "cancelled", "--limit", "5")
    assert (code, listed["action"]) == (0, "jobs.list")
    assert [job["id"] for job in listed["result"]["data"]] == [job_id]
    credits = httpx.get(f"{live_api}/v1/credits", headers=account.headers).json()
    assert (credits["held"], credits["available"]) == (0, 100)


def submit(naive: Naive, prompt: str) -> str:
    code, envelope = naive.json("video", "generate", "-m", KLING_T2V, prompt)
    assert code == 0, envelope
    return str(envelope["result"]["job_id"])


def test_jobs_watch_prints_each_event_in_order_then_the_final_job(naive):
    job_id = submit(naive, "A lighthouse [sim latency=1.5]")
    code, events, envelope = naive.stream("jobs", "watch", job_id)
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "jobs.watch")
    assert envelope["result"]["status"] == "completed"
    assert envelope["result"]["credits_used"] == 3.5
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "job.queued" and events[-1]["type"] == "job.completed"
    assert "job.processing" in [event["type"] for event in events]
    assert all(event["data"]["id"] == job_id for event in events)
    # Times as the API writes them (UTC as `Z`), in the events and in the jobs they carry.
    assert all(event["timestamp"].endswith("Z") for event in events)
    assert events[-1]["data"]["completed_at"].endswith("Z")

    # A job that has ended: its whole history, then the job.
    code, again, envelope = naive.stream("jobs", "watch", job_id)
    assert (code, again, envelope["result"]["status"]) == (0, events, "completed")

    code, screen = naive.tty("jobs", "watch", submit(naive, "A bell [sim latency=1]"))
    assert code == 0
    assert re.search(r"#1\s+job\.queued\s+queued\s+0%", screen)
    assert re.search(r"job\.completed\s+completed\s+100%\s+charged 3\.5 credits", screen)
    # delivered, then charged: two events of a processing job at 100%, told apart
    assert re.search(r"job\.processing\s+processing\s+100%\s+charged 3\.5 credits", screen)


def test_jobs_watch_resumes_a_closed_stream_without_duplicates(make_app, make_naive, account):
    """The API ends each stream after 1 s; the job takes 3: the CLI reconnects with
    Last-Event-ID and sees every event once."""
    with serving(make_app(EVENT_STREAM_MAX_SECONDS="1")) as api_url:
        naive = make_naive(account, api_url)
        job_id = submit(naive, "A slow tide [sim latency=3]")
        code, events, envelope = naive.stream("jobs", "watch", job_id)
    assert code == 0 and envelope["result"]["status"] == "completed"
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "job.completed"


def test_jobs_watch_reconnects_after_a_dropped_connection_without_duplicates(
    make_app, make_naive, account
):
    """Each job's first stream breaks after its first frames (no end of the chunked body):
    the CLI reconnects with Last-Event-ID and sees every event once."""
    flaky = make_app()
    current = flaky.wsgi_app
    broken: set[str] = set()

    def dropped(body: Iterable[bytes]) -> Iterator[bytes]:
        for sent, chunk in enumerate(body):
            if sent == 2:
                raise ConnectionAbortedError("the connection dropped mid-stream")
            yield chunk

    def dropping(environ: dict[str, Any], start_response: Any) -> Any:
        body = current(environ, start_response)
        path = environ["PATH_INFO"]
        if not path.endswith("/events") or path in broken:
            return body
        broken.add(path)
        return dropped(body)

    flaky.wsgi_app = dropping  # type: ignore[method-assign]
    with serving(flaky) as api_url:
        naive = make_naive(account, api_url)
        job_id = submit(naive, "A swaying bridge [sim latency=2]")
        code, events, envelope = naive.stream("jobs", "watch", job_id)
    assert broken == {f"/v1/jobs/{job_id}/events"}
    assert code == 0 and envelope["result"]["status"] == "completed"
    assert [event["id"] for event in events] == list(range(1, len(events) + 1))
    assert events[-1]["type"] == "job.completed"


def test_jobs_watch_polls_an_api_without_the_event_stream(make_app, make_naive, account):
    """An older API answers 404 for /events: the CLI follows the job by polling."""
    older = make_app()
    current = older.wsgi_app

    def without_events(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"].endswith("/events"):
            return NotFound()(environ, start_response)
        return current(environ, start_response)

    older.wsgi_app = without_events  # type: ignore[method-assign]
    with serving(older) as api_url:
        naive = make_naive(account, api_url)
        code, envelope = naive.json(
            "video", "generate", "-m", KLING_T2V, "A mill [sim latency=1]", "--wait"
        )
        assert code == 0 and envelope["result"]["status"] == "completed"
        code, events, envelope = naive.stream("jobs", "watch", submit(naive, "A wheel"))
    assert code == 0 and envelope["result"]["status"] == "completed"
    assert {event["id"] for event in events} == {None}
    assert events[-1]["type"] == "job.completed"


def test_jobs_watch_timeout_ends_a_quiet_stream_on_time(make_app, make_naive, account):
    """A job no worker takes: its stream carries heartbeats only, and --timeout still ends
    the watch on time, exit 3, the job untouched."""
    quiet = make_app(
        CELERY_QUEUE=f"idle-{uuid.uuid4().hex[:8]}", EVENT_STREAM_HEARTBEAT_SECONDS="0.3"
    )
    with serving(quiet) as api_url:
        naive = make_naive(account, api_url)
        job_id = submit(naive, "Never rendered")
        started = time.monotonic()
        code, events, envelope = naive.stream("jobs", "watch", job_id, "--timeout", "2")
        elapsed = time.monotonic() - started
    assert code == 3 and envelope["result"]["code"] == "wait_timeout"
    assert [event["type"] for event in events] == ["job.queued"]
    assert 2 <= elapsed < 6


def test_jobs_watch_failures_are_one_json_line_too(naive):
    """Through a pipe, every line `jobs watch` prints is one JSON document, whatever ends it:
    a job it cannot find, a usage error."""
    code, events, envelope = naive.stream("jobs", "watch", str(uuid.uuid4()))
    assert (code, events, envelope["result"]["code"]) == (2, [], "not_found")
    code, events, envelope = naive.stream("jobs", "watch")
    assert (code, events, envelope["result"]["code"]) == (2, [], "usage_error")
    assert envelope["action"] == "jobs.watch"


def test_jobs_watch_of_a_cancelled_job_exits_4(naive, live_api, account):
    job_id = submit(naive, "A stuck clock [sim stall]")
    wait_for_status(live_api, account, job_id, "processing")
    httpx.delete(f"{live_api}/v1/jobs/{job_id}", headers=account.headers, timeout=10)
    code, events, envelope = naive.stream("jobs", "watch", job_id)
    assert code == 4
    assert (envelope["success"], envelope["result"]["status"]) == (False, "cancelled")
    assert events[-1]["type"] == "job.cancelled"


# --- webhooks ------------------------------------------------------------------------------


@pytest.mark.usefixtures("dispatching")
def test_webhooks_create_list_deliveries_redeliver_and_delete(naive, live_api, account, request):
    hooks: Receiver = request.getfixturevalue("receiver")
    url = hooks.endpoint()
    code, envelope = naive.json(
        "webhooks", "create", "--url", url, "--event", "job.completed", "--description", "cli"
    )
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "webhooks.create")
    created = envelope["result"]
    assert created["secret"].startswith("whsec_")
    assert (created["url"], created["events"]) == (url, ["job.completed"])
    hook_id = created["id"]

    code, envelope = naive.json("webhooks", "list")
    assert code == 0
    assert [hook["id"] for hook in envelope["result"]["data"]] == [hook_id]
    assert "secret" not in envelope["result"]["data"][0]
    code, envelope = naive.json("webhooks", "get", hook_id)
    assert (code, envelope["result"]["description"]) == (0, "cli")

    job_id = submit(naive, "A kite [sim latency=0.5]")
    path = f"{live_api}/v1/webhooks/{hook_id}/deliveries"

    def delivered() -> list[dict[str, Any]] | None:
        data = httpx.get(path, headers=account.headers, timeout=10).json()["data"]
        return data if data and data[0]["status"] == "delivered" else None

    wait_for(delivered, timeout=60, interval=0.2)
    code, envelope = naive.json("webhooks", "deliveries", hook_id)
    assert code == 0
    [delivery] = envelope["result"]["data"]
    assert (delivery["event"], delivery["job_id"], delivery["attempts"]) == (
        "job.completed",
        job_id,
        1,
    )
    assert envelope["next_steps"] == [f"naive webhooks redeliver {delivery['id']}"]
    code, screen = naive.tty("webhooks", "deliveries", hook_id, width=250)
    assert code == 0 and "delivered" in screen and "job.completed #" in screen

    code, envelope = naive.json("webhooks", "redeliver", delivery["id"])
    assert (code, envelope["result"]["id"]) == (0, delivery["id"])
    first, again = wait_for(lambda: (got := hooks.at(url))[1:] and got, timeout=60, interval=0.2)
    assert again.body == first.body
    assert again.headers["webhook-id"] == first.headers["webhook-id"] == delivery["id"]

    code, envelope = naive.json("webhooks", "delete", hook_id)
    assert (code, envelope["result"]) == (0, {"id": hook_id, "deleted": True})
    code, envelope = naive.json("webhooks", "list")
    assert envelope["result"]["data"] == []
    code, envelope = naive.json("webhooks", "get", hook_id)
    assert (code, envelope["result"]["code"]) == (2, "not_found")


def test_a_disabled_webhook_says_so_and_why_and_enable_turns_it_back_on(naive, runtime):
    """A subscription the service disabled (every attempt failed for days) shows it in
    `list` and `get`, and `naive webhooks enable` turns it back on (PATCH status)."""
    code, envelope = naive.json("webhooks", "create", "--url", "https://example.com/hook")
    assert code == 0
    hook_id = envelope["result"]["id"]
    with runtime.db.transaction() as session:
        row = session.get(WebhookSubscription, uuid.UUID(hook_id))
        row.disabled_at = datetime.now(UTC)
        row.disabled_reason = "every delivery attempt failed for 5 days (the last: 503)"

    code, envelope = naive.json("webhooks", "get", hook_id)
    assert (code, envelope["result"]["status"]) == (0, "disabled")
    assert envelope["next_steps"][0] == f"naive webhooks enable {hook_id}"
    code, screen = naive.tty("webhooks", "get", hook_id, width=120)
    assert "disabled: every delivery attempt failed for 5 days (the last: 503)" in screen
    code, screen = naive.tty("webhooks", "list", width=80)
    assert hook_id in screen and "disabled" in screen, screen

    code, envelope = naive.json("webhooks", "enable", hook_id)
    assert (code, envelope["action"]) == (0, "webhooks.enable")
    assert (envelope["result"]["status"], envelope["result"]["disabled_reason"]) == (
        "enabled",
        None,
    )
    code, screen = naive.tty("webhooks", "get", hook_id, width=120)
    assert "enabled" in screen and "disabled" not in screen, screen
    code, envelope = naive.json("webhooks", "enable", str(uuid.uuid4()))
    assert (code, envelope["result"]["code"]) == (2, "not_found")
    assert envelope["next_steps"] == ["naive webhooks list"]


@pytest.mark.parametrize(
    ("args", "listed"),
    [
        (("budgets", "delete"), "naive budgets list"),
        (("webhooks", "get"), "naive webhooks list"),
        (("webhooks", "deliveries"), "naive webhooks list"),
        (("media", "get"), "naive media list"),
        (("jobs", "get"), "naive jobs"),
    ],
)
def test_an_id_not_found_points_at_the_list_it_would_be_in(naive, args, listed):
    code, envelope = naive.json(*args, str(uuid.uuid4()))
    assert (code, envelope["result"]["code"]) == (2, "not_found")
    assert envelope["next_steps"] == [listed]


def test_image_url_takes_an_image_file_here_sent_inline(naive, live_api, account, tmp_path):
    """The service cannot read this machine's files: an image file given to --image-url is
    sent as a data: URL (and quoted so), not refused as "does not match '^(https?://…'"."""
    from PIL import Image

    photo = tmp_path / "still.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(photo)
    inline = "data:image/png;base64," + base64.b64encode(photo.read_bytes()).decode()

    code, envelope = naive.json("video", "quote", "-m", KLING_I2V, "Zoom", "--image-url",
                                str(photo))  # fmt: skip
    assert code == 0, envelope
    assert envelope["result"]["input"]["image_url"] == inline
    assert f"--image-url {photo}" in envelope["next_steps"][0]  # the file, as given
    code, envelope = naive.json("video", "generate", "-m", KLING_I2V, "Zoom [sim latency=0.3]",
                                "--image-url", f"file://{photo}", "--wait")  # fmt: skip
    assert code == 0, envelope
    assert envelope["result"]["status"] == "completed"
    assert envelope["result"]["input"]["image_url"] == inline

    (tmp_path / "notes.txt").write_text("not an image")
    for given, problem in (
        (str(tmp_path / "notes.txt"), "is not a JPEG, PNG, WebP or GIF image"),
        (str(tmp_path / "missing.png"), "is neither an https/http/data: URL nor an image file"),
    ):
        code, envelope = naive.json("video", "generate", "-m", KLING_I2V, "Zoom",
                                    "--image-url", given)  # fmt: skip
        assert (code, envelope["result"]["code"]) == (2, "usage_error"), envelope
        assert problem in envelope["result"]["message"]
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(1_600_000))
    code, envelope = naive.json("video", "generate", "-m", KLING_I2V, "Zoom", "--image-url",
                                str(big))  # fmt: skip
    assert code == 2 and "too large to send inline" in envelope["result"]["message"]


@pytest.mark.usefixtures("dispatching")
def test_generate_sends_metadata_and_a_jobs_own_webhook_whose_secret_it_prints(naive, request):
    """--metadata and --webhook-url (the API's `metadata`, `webhook_url`): the job's own
    secret is shown (in the envelope's hints with --wait, where the job is the result)."""
    import standardwebhooks

    hooks: Receiver = request.getfixturevalue("receiver")
    url = hooks.endpoint()
    code, envelope = naive.json(
        "video", "generate", "-m", KLING_T2V, "A kite [sim latency=0.3]", "--metadata", "run=7",
        "--metadata", "team=blue", "--webhook-url", url, "--webhook-event", "job.completed",
        "--wait",
    )  # fmt: skip
    assert code == 0, envelope
    assert envelope["result"]["metadata"] == {"run": 7, "team": "blue"}
    [secret] = [
        hint.split(": ", 1)[1].split(".", 1)[0]
        for hint in envelope["hints"]
        if hint.startswith("Webhook secret of this job")
    ]
    assert secret.startswith("whsec_")
    [got] = wait_for(lambda: hooks.at(url), timeout=60, interval=0.2)
    event = standardwebhooks.Webhook(secret).verify(got.body, got.headers)
    assert event["type"] == "job.completed"
    assert event["data"]["metadata"] == {"run": 7, "team": "blue"}

    code, envelope = naive.json("video", "generate", "-m", KLING_T2V, "A kite",
                                "--webhook-event", "job.completed")  # fmt: skip
    assert (code, envelope["result"]["code"]) == (2, "usage_error")
    assert "--webhook-event needs --webhook-url" in envelope["result"]["message"]


def test_an_idempotency_key_replays_the_first_job(naive, live_api, account):
    args = ("video", "generate", "-m", KLING_T2V, "Once [sim latency=0.3]")
    _, first = naive.json(*args, "--idempotency-key", "cli-intent-1")
    code, again = naive.json(*args, "--idempotency-key", "cli-intent-1")
    assert code == 0
    assert again["result"]["job_id"] == first["result"]["job_id"]
    assert again["hints"][0].startswith("Replayed: --idempotency-key cli-intent-1 was used")
    assert not first["hints"][0].startswith("Replayed")
    code, clash = naive.json(
        "video", "generate", "-m", KLING_T2V, "Another", "--idempotency-key", "cli-intent-1"
    )
    assert code == 2
    assert clash["result"]["code"] == "idempotency_conflict"
    assert clash["next_steps"] == [f"naive video status {first['result']['job_id']}"]
    jobs = httpx.get(f"{live_api}/v1/jobs", headers=account.headers).json()["data"]
    assert len(jobs) == 1


def test_cancelling_a_completed_job_exits_2(naive, live_api, account):
    code, envelope = naive.json("video", "generate", "-m", KLING_T2V, "Quick [sim latency=0.3]")
    job_id = envelope["result"]["job_id"]
    wait_for_status(live_api, account, job_id, "completed")
    code, envelope = naive.json("jobs", "cancel", job_id)
    assert code == 2
    assert envelope["result"]["code"] == "not_cancellable"
    assert envelope["next_steps"] == ["naive jobs --status completed"]


def test_media_list_and_download(naive, live_api, account, tmp_path):
    code, envelope = naive.json(
        "video", "generate", "-m", KLING_T2V, "A red fox [sim latency=0.5]", "--duration", "3"
    )
    job_id = envelope["result"]["job_id"]
    asset_id = wait_for_status(live_api, account, job_id, "completed")["result"]["media_asset_id"]

    code, envelope = naive.json("media", "list", "--source", "video_generation")
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "media.list")
    [asset] = envelope["result"]["data"]
    assert (asset["id"], asset["source_job_id"]) == (asset_id, job_id)
    assert (asset["source_type"], asset["content_type"]) == ("video_generation", "video/mp4")
    assert envelope["next_steps"] == [f"naive media download {asset_id}"]
    code, screen = naive.tty("media", "list", "--source", "video_generation", width=200)
    assert code == 0
    assert asset_id in screen and "video/mp4" in screen and "3 s" in screen

    target = tmp_path / "fox.mp4"
    code, envelope = naive.json("media", "download", asset_id, "--output", str(target))
    assert code == 0
    assert (envelope["success"], envelope["action"]) == (True, "media.download")
    assert envelope["result"]["size_bytes"] == target.stat().st_size == asset["size_bytes"]
    info = probe_video(target)
    assert info.codec == "h264"
    assert info.duration_seconds == pytest.approx(3.0, abs=0.1)

    # Without --output: the asset's own filename, in the current directory.
    code, screen = naive.tty("media", "download", asset_id)
    assert code == 0
    saved = tmp_path / asset["filename"]
    assert f"Saved {asset['size_bytes'] / 1000:.1f} KB to {asset['filename']}" in screen
    assert saved.read_bytes() == target.read_bytes()

    # --output a folder: the asset's own filename, in it (it was refused, "is a directory").
    folder = tmp_path / "videos"
    folder.mkdir()
    code, envelope = naive.json("media", "download", asset_id, "--output", str(folder))
    assert code == 0, envelope
    assert envelope["result"]["path"] == str((folder / asset["filename"]).resolve())
    assert (folder / asset["filename"]).read_bytes() == target.read_bytes()

    code, envelope = naive.json("media", "download", "00000000-0000-0000-0000-000000000000")
    assert code == 2
    assert envelope["result"]["code"] == "not_found"


def test_video_batch_from_jsonl_waits_and_reports_partial_failure(naive, tmp_path):
    lines = [
        {"model": KLING_T2V, "input": {"prompt": "Dawn [sim latency=0.5]"}, "metadata": {"n": 1}},
        {"model": KLING_T2V, "input": {"prompt": "Dusk [sim latency=0.5 fail='no light']"}},
    ]
    shots = tmp_path / "shots.jsonl"
    shots.write_text("\n".join(json.dumps(line) for line in lines) + "\n\n")
    code, envelope = naive.json("video", "batch", str(shots), "--wait", "--json", timeout=90)
    assert code == 4, envelope  # an item failed
    result = envelope["result"]
    assert (result["status"], result["counts"]["completed"], result["counts"]["failed"]) == (
        "completed_with_errors",
        1,
        1,
    )
    assert result["charged_credits"] == 3.5 and result["estimated_credits"] == 7.0

    code, shown = naive.tty("video", "batch-status", result["id"])
    assert code == 0 and "completed_with_errors" in shown and result["items"][0]["id"] in shown
    assert "(est.)" not in shown  # every item ended: the failed one cost nothing
    why = shown.split("Why items failed")[1].split("Next:")[0]  # the failed item, its error
    assert result["items"][1]["id"] in why and "provider_error: no light" in why
    assert result["items"][0]["id"] not in why

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "x"}\nnot json\n')
    code, envelope = naive.json("video", "batch", str(bad), "--json")
    assert code == 2 and "line 2" in envelope["result"]["message"]

    # The API's refusal of its items[1] names the file's line 3 (after a blank line).
    unknown = tmp_path / "unknown.jsonl"
    unknown.write_text(json.dumps(lines[0]) + '\n\n{"model": "nope", "input": {}}\n')
    code, envelope = naive.json("video", "batch", str(unknown), "--json")
    assert code != 0 and envelope["result"]["message"].startswith("line 3 (items[1]): ")


@contextmanager
def scripted_api(answers: list[dict[str, Any] | None]) -> Iterator[tuple[str, list[str]]]:
    """A local HTTP server that answers each GET with the next of `answers` as JSON (None:
    closes the connection without a status line); yields its URL and the `Authorization`
    header of each request it got."""
    authorizations: list[str] = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorizations.append(self.headers.get("Authorization", ""))
            answer = answers.pop(0)
            if answer is None:
                self.close_connection = True
                return
            body = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", authorizations
    finally:
        server.shutdown()
        server.server_close()


def test_a_batch_wait_outlives_a_dropped_connection() -> None:
    """A batch wait keeps going when the API drops a connection without answering (a
    server closing an idle keep-alive connection as the poll is sent, an API restarting),
    as a job's wait does: it failed there once with "Server disconnected"."""
    batch = {
        "id": str(uuid.uuid4()),
        "status": "processing",
        "item_count": 0,
        "counts": {},
        "estimated_credits": 0,
        "charged_credits": 0,
        "created_at": "2026-11-30T00:00:00Z",
        "completed_at": None,
        "items": [],
    }
    answers: list[dict[str, Any] | None] = [None, batch, {**batch, "status": "completed"}]
    with scripted_api(answers) as (url, _):
        client = ApiClient(url, "nv_sk_test")
        try:
            shown = until_batch_ends(client, batch["id"], timeout=30)
        finally:
            client.close()
    assert shown.status == "completed" and answers == []


def test_the_local_stack_is_used_with_a_key_given_and_its_key_goes_nowhere_else(
    tmp_path: Path,
) -> None:
    """With a stack from `naive local up` here, a command given a key (but no URL) talks to
    that stack, not to the default port, where another program may listen; a command
    given another URL never sends it the stack's key."""
    credits = {"balance": 1, "held": 0, "available": 1, "credit_value_usd": 0.5, "entries": []}
    env = {"NAIVE_DATA_DIR": str(tmp_path), "NAIVE_API_KEY": None, "NAIVE_API_URL": None}
    runner = CliRunner()
    with (
        scripted_api([credits, credits]) as (stack_url, to_stack),
        scripted_api([credits]) as (other_url, to_other),
    ):
        (tmp_path / "local-stack.json").write_text(
            json.dumps({"api_url": stack_url, "api_key": "nv_sk_stack"})
        )
        for args in (["--api-key", "nv_sk_given"], [], ["--api-url", other_url]):
            answer = runner.invoke(cli, [*args, "credits", "--json"], env=env)
            assert answer.exit_code == 0, answer.output
    assert to_stack == ["Bearer nv_sk_given", "Bearer nv_sk_stack"]
    assert to_other == [""]


def test_video_batch_cancel_cancels_the_items_not_started(make_naive, idle_app, account, tmp_path):
    """Against an API whose messages no worker reads, a batch's items wait: batch-cancel
    cancels them all and releases the whole hold."""
    shots = tmp_path / "waiting.jsonl"
    item = {"model": KLING_T2V, "input": {"prompt": "Waits [sim latency=1]"}}
    shots.write_text(json.dumps(item) + "\n" + json.dumps(item) + "\n")
    with serving(idle_app) as url:
        naive = make_naive(account, api_url=url)
        code, accepted = naive.json("video", "batch", str(shots), "--json")
        assert code == 0, accepted
        code, envelope = naive.json("video", "batch-cancel", accepted["result"]["batch_id"])
        credits = naive.json("credits")[1]["result"]
    assert code == 0, envelope
    assert envelope["result"]["status"] == "cancelled"
    assert envelope["result"]["counts"]["cancelled"] == 2
    assert envelope["hints"][0].startswith("2 item(s) cancelled")
    assert credits["held"] == 0


def test_video_quote_then_generate_with_it_and_budgets(naive):
    code, envelope = naive.json("video", "quote", "--model", KLING_T2V, "A quiet harbour",
                                "--duration", "10", "--json")  # fmt: skip
    assert code == 0, envelope
    quoted = envelope["result"]
    assert quoted["estimated_credits"] == 7.0
    generate_again = envelope["next_steps"][0]
    assert f"--quote-id {quoted['quote_id']}" in generate_again
    assert "'A quiet harbour' --duration 10" in generate_again
    assert envelope["hints"] == [f"The price holds until {quoted['expires_at']}."]
    code, envelope = naive.json("video", "generate", "--model", KLING_T2V, "A quiet harbour",
                                "--duration", "10", "--quote-id", quoted["quote_id"],
                                "--json")  # fmt: skip
    assert code == 0 and envelope["result"]["estimated_credits"] == 7.0
    code, envelope = naive.json("video", "generate", "--model", KLING_T2V, "Another harbour",
                                "--quote-id", quoted["quote_id"], "--json")  # fmt: skip
    assert code == 2 and envelope["result"]["code"] == "quote_mismatch"
    assert envelope["next_steps"] == [f"naive video quote --model {KLING_T2V} PROMPT"]
    assert "A quote prices one exact request" in envelope["hints"][0]

    code, envelope = naive.json("budgets", "list")
    assert (code, envelope["result"]["data"]) == (0, [])
    assert envelope["hints"] == [
        "No budgets yet: only the credits available limit what is submitted."
    ]
    code, envelope = naive.json("budgets", "set", "--period", "day", "--credits", "10", "--json")
    assert code == 0 and envelope["result"]["remaining_credits"] == 3.0  # 7 committed today
    code, shown = naive.tty("budgets", "list")
    assert code == 0 and envelope["result"]["id"] in shown and "account" in shown
    code, envelope = naive.json("video", "generate", "--model", KLING_T2V, "Over budget",
                                "--duration", "10", "--json")  # fmt: skip
    assert code == 2 and envelope["result"]["code"] == "budget_exceeded"
    assert envelope["next_steps"] == [
        "naive budgets list",
        "naive budgets set --period day --credits N",
    ]
    code, _ = naive.json("budgets", "delete", envelope["result"]["budget"]["id"], "--json")
    assert code == 0
