r"""Submit throughput and latency of POST /v1/video/generate against a running API.

    python bench/submit_throughput.py --api-url URL --api-key KEY \
        [--requests 500] [--concurrency 16]

Each request is a real job (credits are held), so give the key enough credits
(`naive admin create-account --credits 100000`). Prints requests/s, p50 and p99.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

BODY = {
    "model": "fal-ai/kling-video/v3/pro/text-to-video",
    "input": {"prompt": "bench [sim latency=1]", "duration": "5"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()

    headers = {"Authorization": f"Bearer {args.api_key}"}
    clients = [
        httpx.Client(base_url=args.api_url, headers=headers, timeout=60)
        for _ in range(args.concurrency)
    ]

    def submit(i: int) -> tuple[float, int]:
        started = time.perf_counter()
        status = clients[i % args.concurrency].post("/v1/video/generate", json=BODY).status_code
        return time.perf_counter() - started, status

    wall = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
        results = list(pool.map(submit, range(args.requests)))
    wall = time.perf_counter() - wall
    latencies = sorted(latency for latency, _ in results)
    accepted = sum(1 for _, status in results if status == 202)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(f"{args.requests} submits, {args.concurrency} concurrent: {accepted} accepted")
    print(
        f"throughput {args.requests / wall:.0f} req/s; "
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
