"""Time from submit to `completed` as a client sees it, against a running API and worker.

    python bench/job_latency.py --api-url URL --api-key KEY [--jobs 10] [--latency 2]

`--latency` is the simulated render time; the difference is our pipeline's overhead
(queueing, poll backoff, settlement, ingestion). Jobs run one after the other.
"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--latency", type=float, default=2.0)
    args = parser.parse_args()

    http = httpx.Client(
        base_url=args.api_url, timeout=30, headers={"Authorization": f"Bearer {args.api_key}"}
    )
    body = {
        "model": "fal-ai/kling-video/v3/pro/text-to-video",
        "input": {"prompt": f"latency [sim latency={args.latency}]", "duration": "5"},
    }
    totals = []
    for _ in range(args.jobs):
        started = time.perf_counter()
        job_id = http.post("/v1/video/generate", json=body).json()["job_id"]
        while http.get(f"/v1/jobs/{job_id}").json()["status"] not in (
            "completed",
            "failed",
            "cancelled",
        ):
            time.sleep(0.05)
        totals.append(time.perf_counter() - started)
    overhead = [total - args.latency for total in totals]
    print(f"{args.jobs} jobs, simulated render {args.latency} s")
    print(
        f"submit → completed: median {statistics.median(totals):.2f} s, "
        f"max {max(totals):.2f} s; overhead median {statistics.median(overhead):.2f} s"
    )


if __name__ == "__main__":
    main()
