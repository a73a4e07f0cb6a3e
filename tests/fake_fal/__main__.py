"""Run the fake fal: `python -m tests.fake_fal --port 0 --data-dir DIR --key KEY`.

Prints one JSON line with its facts (port, base_url, queue_host, run_host, ca_file, jwks_url,
platform_url, key) once listening, then serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path
from types import FrameType

from tests.fake_fal.server import FakeFalServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_fal", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--data-dir", type=Path, required=True, help="CA, renders, state")
    parser.add_argument("--key", required=True, help="the accepted `Authorization: Key` value")
    parser.add_argument("--prices", type=Path, help='JSON {endpoint_id: {"unit_price", "unit"}}')
    parser.add_argument(
        "--webhook-retry-seconds",
        type=float,
        default=1.0,
        help="first webhook retry delay; doubles per attempt, capped at 10 s",
    )
    parser.add_argument(
        "--latency", type=float, help="simulated seconds from submit to completion (default 8)"
    )
    args = parser.parse_args(argv)

    stopped = threading.Event()

    def stop(signum: int, frame: FrameType | None) -> None:
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server = FakeFalServer(
        args.data_dir,
        args.key,
        port=args.port,
        host=args.host,
        prices_file=args.prices,
        webhook_retry_seconds=args.webhook_retry_seconds,
        latency_seconds=args.latency,
    ).start()
    print(json.dumps(server.info()), flush=True)
    stopped.wait()
    server.stop()


if __name__ == "__main__":
    main()
