"""Provider status calls per job and completion lag, polling alone and with webhooks.

    python -m bench.provider_calls [--jobs 5] [--render-seconds 60]

Runs the real stack twice side by side on this machine (a scratch PostgreSQL database,
Redis, one Celery worker each, the API over HTTP) against the fake fal server through
the real fal-client, with the production poll settings (POLL_INITIAL_SECONDS=2,
POLL_MAX_SECONDS=15). Lag is the time from the provider finishing the render to the
API reporting the job completed (settlement and ingestion included).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import httpx

from bench import harness
from services.api.app import create_app
from shared import accounts
from shared.config import load_settings
from shared.db import Database
from tests.fake_fal import FakeFalServer
from tests.stack import redis_url, running_worker, scratch_database, serving

KEY = "bench-fal-key"
MODEL = "fal-ai/kling-video/v3/pro/text-to-video"


def _run_mode(stack: ExitStack, name: str, env: dict[str, str], work: Path) -> str:
    stack.enter_context(running_worker(env, work / f"{name}-worker.log", concurrency=4))
    port = int(env["BENCH_PORT"])
    return stack.enter_context(serving(create_app(load_settings(env)), port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=5)
    parser.add_argument("--render-seconds", type=float, default=60)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    started = time.monotonic()
    harness.print_machine()

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        database_url = stack.enter_context(scratch_database("naive_bench"))
        fake = FakeFalServer(work / "fal", KEY, latency_seconds=args.render_seconds)
        fake.start()
        stack.callback(fake.stop)
        os.environ["SSL_CERT_FILE"] = str(fake.ca_file)
        base = {
            "DATABASE_URL": database_url,
            "NAIVE_DATA_DIR": str(work / "data"),
            "NAIVE_PROVIDER": "fal",
            "FAL_KEY": KEY,
            "FAL_QUEUE_RUN_HOST": fake.queue_host,
            "FAL_RUN_HOST": fake.run_host,
            "FAL_JWKS_URL": fake.jwks_url,
            "FAL_PLATFORM_URL": fake.platform_url,
            "SSL_CERT_FILE": str(fake.ca_file),
            # No beat runs here (the two modes share a database, and a dispatcher sends to
            # its own queue): every poll is a countdown message, none is parked.
            "POLL_HORIZON_SECONDS": "3600",
        }
        modes = {}
        for name, webhooks in (("polling", False), ("webhooks", True)):
            port = harness.free_port()
            env = {
                **base,
                "CELERY_BROKER_URL": redis_url(0),
                "CELERY_QUEUE": f"bench-{name}",
                "BENCH_PORT": str(port),
            }
            if webhooks:
                env["FAL_WEBHOOK_URL"] = f"http://127.0.0.1:{port}/v1/webhooks/fal"
            modes[name] = _run_mode(stack, name, env, work)

        db = Database(database_url)
        with db.transaction() as session:
            key = accounts.create_account(
                session=session, name="bench", credits=Decimal(10_000)
            ).api_key
        db.dispose()
        headers = {"Authorization": f"Bearer {key}"}
        body = {"model": MODEL, "input": {"prompt": "bench", "duration": "5"}}
        submitted = {
            name: [
                httpx.post(f"{url}/v1/video/generate", json=body, headers=headers).json()["job_id"]
                for _ in range(args.jobs)
            ]
            for name, url in modes.items()
        }
        deadline = time.monotonic() + args.render_seconds * 3 + 120
        results: dict[str, list[dict]] = {}
        for name, url in modes.items():
            jobs = []
            for job_id in submitted[name]:
                while True:
                    job = httpx.get(f"{url}/v1/jobs/{job_id}", headers=headers).json()
                    if job["status"] in ("completed", "failed", "cancelled"):
                        break
                    if time.monotonic() > deadline:
                        raise SystemExit(f"{name}: job {job_id} did not finish")
                    time.sleep(0.2)
                jobs.append(job)
            results[name] = jobs

        stats = httpx.get(f"{fake.base_url}/_fake/stats").json()["requests"]
        print(f"{args.jobs} jobs per mode, {args.render_seconds:.0f} s render at the provider")
        print(f"{'mode':<10} {'status calls/job':>17} {'lag median':>11} {'lag max':>8}")
        for name, jobs in results.items():
            calls, lags = [], []
            for job in jobs:
                request = stats[job["provider_request_id"]]
                calls.append(request["status_calls"])
                done = request["submitted_at"] + args.render_seconds
                finished = datetime.fromisoformat(job["completed_at"].replace("Z", "+00:00"))
                lags.append(finished.timestamp() - done)
            print(
                f"{name:<10} {statistics.mean(calls):>17.1f} "
                f"{statistics.median(lags):>10.2f}s {max(lags):>7.2f}s"
            )
    print(f"bench ran {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
