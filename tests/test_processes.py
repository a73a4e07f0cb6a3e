"""The Procfile and `services.processes` say the same command lines: the platform runs the
one, `naive local up`, the tests and the benches the other."""

from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

from services import processes
from tests.stack import started

PROCFILE = Path(__file__).resolve().parent.parent / "Procfile"


def _expand_defaults(line: str) -> str:
    """`${VAR:-default}` → `default`: the command a platform runs with nothing set."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", line)


def procfile() -> dict[str, list[str]]:
    """The Procfile's processes: name → argument list, variables at their defaults."""
    entries: dict[str, list[str]] = {}
    for line in PROCFILE.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, command = line.split(":", 1)
        entries[name.strip()] = shlex.split(_expand_defaults(command))
    return entries


def test_every_procfile_line_is_the_command_line_the_code_starts():
    assert procfile() == {
        "release": processes.release(),
        "api": processes.api(bind="0.0.0.0:8000", metrics_bind="0.0.0.0:9101", workers=2),
        "worker": processes.worker(concurrency=4),
        "beat": processes.beat(schedule="var/celerybeat-schedule"),
    }


def test_no_variable_is_left_unexpanded():
    assert "$" not in " ".join(" ".join(argv) for argv in procfile().values())


def test_python_m_runs_each_program_with_this_interpreter():
    assert processes.python_m(processes.worker(concurrency=1))[:4] == [
        sys.executable,
        "-m",
        "celery",
        "-A",
    ]
    assert processes.python_m(processes.release()) == [
        sys.executable,
        "-m",
        "services.cli.main",
        "admin",
        "migrate",
    ]


def test_the_procfile_worker_starts_on_a_fresh_machine_with_nothing_configured(tmp_path):
    """The embedded default (SQLite, the filesystem broker) in an empty data folder: the
    worker creates the broker's folders itself rather than dying on the first listing."""
    log = tmp_path / "worker.log"
    argv = processes.python_m(processes.worker(concurrency=1))
    env = {"PATH": os.environ["PATH"], "NAIVE_DATA_DIR": str(tmp_path / "fresh")}
    with started(
        argv, log, env=env, inherit_env=False, ready=lambda: b"ready." in log.read_bytes()
    ):
        assert (tmp_path / "fresh" / "broker" / "queue").is_dir()
