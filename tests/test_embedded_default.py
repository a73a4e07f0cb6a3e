"""Smoke test of the embedded default: no database server, no broker server, the simulator.

Runs what the README's quick start runs (`naive local up`, then the spec's CLI line)
in a fresh data folder with none of the production variables set.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from services.cli.local import STACK_FILE, port_taken
from shared.media.probe import probe_video
from tests.stack import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PRODUCTION_VARIABLES = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "MEDIA_ROOT",
    "NAIVE_API_KEY",
    "NAIVE_API_URL",
)


def _local_env(tmp_path: Path) -> dict[str, str]:
    """The environment with none of the production variables, and with a per-user state
    folder of the test's own (`naive local up` records there the stack it started)."""
    env = {k: v for k, v in os.environ.items() if k not in PRODUCTION_VARIABLES}
    env.pop("NAIVE_DATA_DIR", None)
    env["XDG_STATE_HOME"] = str(tmp_path / "state")
    return env


def test_the_quick_start_makes_a_playable_video_with_no_servers(tmp_path: Path):
    env = _local_env(tmp_path)
    env.update(
        NAIVE_DATA_DIR=str(tmp_path / "var"),
        SIMULATOR_LATENCY_SECONDS="2",
        NAIVE_LOCAL_PORT=str(free_port()),  # as the README says for a machine using 8000
        API_METRICS_PORT=str(free_port()),
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return _naive(env, *args)

    try:
        started = run("local", "up")
        assert started.returncode == 0, started.stdout + started.stderr
        # It says how to add credits to the local account: a command that works as printed.
        topup = re.search(
            r"naive (admin grant-credits --account \S+ --credits 100)", started.stderr
        )
        assert topup is not None, started.stderr
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
        granted = run(*topup.group(1).split(), "--json")
        assert json.loads(granted.stdout)["result"]["balance"] == 196.5, granted.stderr
        assert json.loads(run("credits").stdout)["result"]["available"] == 196.5
        media = json.loads(run("media", "list", "--source", "video_generation").stdout)
        assert media["result"]["total"] == 1
        assert (tmp_path / "var" / "naive.db").is_file()  # SQLite, not a server
        stack = json.loads((tmp_path / "var" / STACK_FILE).read_text())
        # The local key's id, for a budget of its own (it showed nowhere before a charge).
        budget = run("budgets", "set", "--period", "day", "--credits", "500",
                     "--key-id", stack["key_id"], "--json")  # fmt: skip
        assert budget.returncode == 0, budget.stdout + budget.stderr
        _concurrent_requests_all_answer(stack)
        said = run("local", "status").stdout
        assert said.count("running") == 3 and f"API {stack['api_url']}" in said, said
        assert stack["api_url"].endswith(f":{env['NAIVE_LOCAL_PORT']}")
        for log in (tmp_path / "var" / "logs").glob("*.log"):  # kombu's, on each connection
            assert "No hostname was supplied" not in log.read_text(), log.name
    finally:
        began = time.monotonic()
        stopped = run("local", "down")
        took = time.monotonic() - began
    # Every process stops on its own (a warm shutdown), within seconds, none killed.
    assert "killed" not in stopped.stderr and stopped.stderr.count("stopped") == 3, stopped.stderr
    assert took < 15, f"local down took {took:.1f} s"


def _concurrent_requests_all_answer(stack: dict[str, str]) -> None:
    """Image-to-video submits (each looks its image's host name up, which yields to other
    requests under gevent) beside reads, at once, all answer in seconds. They used to
    deadlock on SQLite's write lock for its 30 s busy timeout, time out, and once take the
    API down (a worker restarting met the lock while booting)."""
    headers = {"Authorization": f"Bearer {stack['api_key']}"}
    body = {
        "model": "fal-ai/kling-video/v3/pro/image-to-video",
        "input": {"image_url": "https://img.example.com/a.png", "prompt": "x [sim latency=1]"},
    }

    def submit(client: httpx.Client) -> int:
        return client.post("/v1/video/generate", json=body, headers=headers).status_code

    def read(client: httpx.Client) -> int:
        return client.get("/v1/credits", headers=headers).status_code

    with (
        httpx.Client(base_url=stack["api_url"], timeout=15) as client,
        ThreadPoolExecutor(24) as pool,
    ):
        answers = list(pool.map(lambda call: call(client), [submit, read] * 12))
    assert sorted(set(answers)) == [200, 202], answers


def _naive(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli.main", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_the_local_stack_is_found_from_any_directory(tmp_path: Path) -> None:
    """Started in a clone (as `make demo` does, its data under the clone's ./var), the stack
    is the one every command uses from any other directory: they found none there."""
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    clone.mkdir()
    elsewhere.mkdir()
    env = _local_env(tmp_path)
    env.update(NAIVE_LOCAL_PORT=str(free_port()), API_METRICS_PORT=str(free_port()))
    try:
        started = _naive(env, "local", "up", cwd=clone)
        assert started.returncode == 0, started.stdout + started.stderr
        said = _naive(env, "local", "status", cwd=elsewhere).stdout
        assert said.count("running") == 3, said
        assert f"data and logs in {clone / 'var'}" in said, said
        credits = _naive(env, "credits", cwd=elsewhere)
        assert json.loads(credits.stdout)["result"]["available"] == 100, credits.stderr
        # The top-up `up` prints works here too: on that stack's database, not ./var's.
        topup = re.search(r"naive (admin grant-credits .*)", started.stderr)
        assert topup is not None, started.stderr
        granted = _naive(env, *topup.group(1).split(), "--json", cwd=elsewhere)
        assert json.loads(granted.stdout)["result"]["available"] == 200, granted.stderr
        again = _naive(env, "local", "up", cwd=elsewhere)
        assert again.returncode == 0 and "already running" in again.stderr, again.stderr
        assert not (elsewhere / "var").exists()  # nothing started or made here
        stopped = _naive(env, "local", "down", cwd=elsewhere)
        assert stopped.stderr.count("stopped") == 3, stopped.stderr
        said = _naive(env, "local", "status", cwd=clone).stdout
        assert "local stack is not running" in said, said
    finally:
        _naive(env, "local", "down", cwd=clone)


def test_the_quick_start_says_how_to_get_naive_on_the_path() -> None:
    """`make demo` installs `naive` into .venv only, while every hint says `naive …`: the
    README's quick start and the demo's last line say how to run it."""
    quick_start = README.read_text().split("## Quick start")[1].split("\n## ")[0]
    assert "source .venv/bin/activate" in quick_start, quick_start
    demo = subprocess.run(  # under `make test` too, which would print its directories
        ["make", "--no-print-directory", "--dry-run", "--always-make", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "source .venv/bin/activate" in demo.stdout.strip().splitlines()[-1], demo.stdout


def test_a_second_stack_started_and_stopped_leaves_the_first_found(tmp_path: Path) -> None:
    """Each `up` overwrote one per-user record and `down` left it naming its own stack: after
    a second stack came and went, the first, still running, was found from nowhere else
    (not running, 401, its port "used by another program", `down` stopping nothing)."""
    clone, elsewhere = tmp_path / "clone", tmp_path / "elsewhere"
    clone.mkdir()
    elsewhere.mkdir()
    first = _local_env(tmp_path)
    first.update(NAIVE_LOCAL_PORT=str(free_port()), API_METRICS_PORT=str(free_port()))
    second = {**first, "NAIVE_DATA_DIR": str(tmp_path / "stack2")}
    second.update(NAIVE_LOCAL_PORT=str(free_port()), API_METRICS_PORT=str(free_port()))
    try:
        assert _naive(first, "local", "up", cwd=clone).returncode == 0
        assert _naive(second, "local", "up", cwd=elsewhere).returncode == 0
        # A third one on the first's port is told whose port it is, and how to stop it.
        third = {**first, "NAIVE_DATA_DIR": str(tmp_path / "stack3")}
        refused = _naive(third, "local", "up", cwd=elsewhere)
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0 and f"local stack in {clone / 'var'}" in said, said
        assert _naive(second, "local", "down").stderr.count("stopped") == 3
        said = _naive(first, "local", "status", cwd=elsewhere).stdout
        assert said.count("running") == 3 and str(clone / "var") in said, said
        credits = _naive(first, "credits", cwd=elsewhere)
        assert json.loads(credits.stdout)["result"]["available"] == 100, credits.stderr
        stopped = _naive(first, "local", "down", cwd=elsewhere)
        assert stopped.stderr.count("stopped") == 3, stopped.stderr
    finally:
        _naive(second, "local", "down")
        _naive(first, "local", "down", cwd=clone)


def test_admin_without_a_database_is_an_error_envelope_and_makes_none(tmp_path: Path) -> None:
    """With no stack anywhere, `naive admin grant-credits` died with a traceback ("unable
    to open database file"), or made an empty ./var/naive.db where a ./var existed."""
    bare, with_var = tmp_path / "bare", tmp_path / "with-var"
    (with_var / "var").mkdir(parents=True)
    bare.mkdir()
    account = "--account=00000000-0000-0000-0000-000000000001"
    for folder in (bare, with_var):
        grant = ("admin", "grant-credits", account, "--credits=1", "--json")
        ran = _naive(_local_env(tmp_path), *grant, cwd=folder)
        assert ran.returncode == 3 and "Traceback" not in ran.stderr, ran.stderr
        envelope = json.loads(ran.stdout)
        assert (envelope["success"], envelope["result"]["code"]) == (False, "database_unavailable")
        assert "naive local up" in envelope["next_steps"], envelope
    assert not (bare / "var").exists() and list((with_var / "var").iterdir()) == []


def test_local_up_refuses_a_port_another_program_serves(tmp_path: Path) -> None:
    """It used to say "local stack up" while another server answered its health check
    (and every command then failed with 401): now it says so, and starts nothing."""
    env = _local_env(tmp_path)
    env.update(NAIVE_DATA_DIR=str(tmp_path / "var"), API_METRICS_PORT=str(free_port()))
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        refused = _naive(env, "local", "up", "--port", str(port))
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr  # the CLI's JSON error envelope
    assert f"port {port}" in said and "--port" in said, said
    assert not (tmp_path / "var" / "local-stack.json").exists()


def test_a_port_left_in_time_wait_by_a_stopped_stack_is_free() -> None:
    """After a stack stops with connections open, they linger in TIME_WAIT for a minute:
    `local up` said the port was "in use by another program" though gunicorn could bind it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = listener.accept()
            accepted.close()  # the server's side closes first: its port goes to TIME_WAIT
            assert client.recv(1) == b""
    assert not port_taken(port)
