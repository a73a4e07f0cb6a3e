"""A fake fal.ai: fal's queue, webhook and platform protocols over HTTPS, backed by the simulator.

Run it with `python -m tests.fake_fal --port 0 --data-dir DIR --key KEY`, or in-process with
`FakeFalServer(data_dir, key).start()`. Prompt directives `[fal …]` choose faults per request.
"""

from tests.fake_fal.server import FakeFalServer
from tests.fake_fal.webhooks import WebhookSigner

__all__ = ["FakeFalServer", "WebhookSigner"]
