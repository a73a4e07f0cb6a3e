"""`FakeFalServer`: the fake fal over HTTPS on a local port, in a background thread."""

from __future__ import annotations

import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from werkzeug.serving import make_server

from shared.providers.simulator import SimulatorProvider
from tests.fake_fal.app import create_app
from tests.fake_fal.notify import WebhookNotifier
from tests.fake_fal.platform import Platform
from tests.fake_fal.queue import FakeQueue
from tests.fake_fal.tls import server_tls
from tests.fake_fal.webhooks import WebhookSender, WebhookSigner


class FakeFalServer:
    """A fake fal.ai listening on `host:port` (0 = any free port) once constructed.

    Point fal-client at it with `FAL_QUEUE_RUN_HOST`/`FAL_RUN_HOST` = `queue_host`/`run_host`,
    `SSL_CERT_FILE` = `ca_file` and `FAL_KEY` = `key`, set before `fal_client` is imported.
    """

    def __init__(
        self,
        data_dir: Path,
        key: str,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
        prices_file: Path | None = None,
        webhook_retry_seconds: float = 1.0,
        latency_seconds: float | None = None,
    ) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.key = key
        listener = socket.create_server((host, port))
        self.port: int = listener.getsockname()[1]
        self.base_url = f"https://localhost:{self.port}"
        self.queue_host = self.run_host = f"localhost:{self.port}"
        self.jwks_url = f"{self.base_url}/.well-known/jwks.json"
        self.platform_url = f"{self.base_url}/v1"
        ssl_context, self.ca_file = server_tls(data_dir)
        self.signer = WebhookSigner.generate()
        simulator = SimulatorProvider(data_dir / "simulator", latency_seconds)
        self.queue = FakeQueue(simulator, self.base_url)
        self._sender = WebhookSender(self.signer, webhook_retry_seconds)
        self._notifier = WebhookNotifier(self.queue, self._sender)
        app = create_app(self.queue, Platform.load(prices_file), self.signer, key)
        self._server = make_server(
            host, self.port, app, threaded=True, ssl_context=ssl_context, fd=listener.fileno()
        )
        listener.close()  # the server serves a duplicate of its descriptor
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-fal-server", daemon=True
        )

    def info(self) -> dict[str, Any]:
        """The facts a client needs, as the CLI prints them."""
        return {
            "port": self.port,
            "base_url": self.base_url,
            "queue_host": self.queue_host,
            "run_host": self.run_host,
            "ca_file": str(self.ca_file),
            "jwks_url": self.jwks_url,
            "platform_url": self.platform_url,
            "key": self.key,
        }

    def start(self) -> FakeFalServer:
        """Serve in background threads; returns self."""
        self._thread.start()
        self._notifier.start()
        return self

    def stop(self) -> None:
        """Stop serving and abandon pending webhook deliveries."""
        self._sender.stop()
        self._notifier.stop()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FakeFalServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
