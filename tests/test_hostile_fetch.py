"""Hostile image URLs (issue 11, items 8-9): hosts that trickle, redirect inwards or rebind
their names cannot hold a worker or reach an internal address.

Against real HTTP servers on loopback threads. 127.0.0.2 stands in for a public host: the
policy these tests pass is the real one (`is_public`) plus that one address, so everything
else on the way, the internal 127.0.0.1 included, meets the production check."""

from __future__ import annotations

import http.server
import io
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PIL import Image

from shared.media.fetch import ImageFetchError, load_image
from shared.media.url_policy import Address, address_policy, check_fetchable, is_public
from tests.helpers import KLING_I2V
from tests.stack import free_port

PUBLIC_STAND_IN = ipaddress.ip_address("127.0.0.2")
ANY_ADDRESS = address_policy(allow_private=True)
GREEN, RED = (20, 200, 20), (220, 20, 20)
TRICKLE_SECONDS = 0.05  # one byte this often: far inside any per-read timeout
GIVE_UP_SECONDS = 10  # hostile routes stop here, so a broken fetch fails instead of hanging


def _policy(address: Address) -> bool:
    return address == PUBLIC_STAND_IN or is_public(address)


# --- servers --------------------------------------------------------------------------------

Route = Callable[["_Handler"], None]


class _Site(http.server.ThreadingHTTPServer):
    """An HTTP server on a loopback address whose routes are plain functions; it records
    every request (path and Host header) and how many bytes its hostile routes sent."""

    daemon_threads = True

    def __init__(self, host: str, port: int, routes: dict[str, Route]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        self.sent = 0
        self.cut = threading.Event()  # the client hung up on a hostile route
        self.stop = threading.Event()
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Site
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Host", "")))
        route = self.server.routes.get(self.path)
        if route is None:
            self.send_error(404)
        else:
            route(self)

    def send_bytes(self, data: bytes) -> bool:
        """Send and count `data`; False once the client has hung up."""
        try:
            self.wfile.write(data)
        except OSError:
            self.server.cut.set()
            return False
        self.server.sent += len(data)
        return True

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@contextmanager
def _site(routes: dict[str, Route], host: str = "127.0.0.1", port: int = 0) -> Iterator[_Site]:
    site = _Site(host, port, routes)
    thread = threading.Thread(target=site.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield site
    finally:
        site.stop.set()
        site.shutdown()
        site.server_close()
        thread.join()


def _reply(body: bytes, content_type: str = "image/png") -> Route:
    def route(handler: _Handler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    return route


def _redirect(location: str) -> Route:
    def route(handler: _Handler) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return route


def _trickle(head: bytes) -> Route:
    """Send `head`, then one more byte every TRICKLE_SECONDS until the client hangs up."""

    def route(handler: _Handler) -> None:
        handler.send_bytes(head)
        give_up = time.monotonic() + GIVE_UP_SECONDS
        while time.monotonic() < give_up and handler.send_bytes(b"a"):
            if handler.server.stop.wait(TRICKLE_SECONDS):
                return

    return route


# --- images ---------------------------------------------------------------------------------


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


# --- item 8: one deadline for the whole fetch ------------------------------------------------


@pytest.mark.parametrize(
    "head",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nX-Slow: ", id="headers"),
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n", id="body"),
    ],
)
def test_a_host_trickling_its_answer_cannot_hold_the_fetch_past_its_deadline(head: bytes) -> None:
    with _site({"/image.png": _trickle(head)}) as site:
        started = time.monotonic()
        with pytest.raises(ImageFetchError, match="timed out after 1s"):
            load_image(f"{site.url}/image.png", allow_address=ANY_ADDRESS, timeout=1.0)
        elapsed = time.monotonic() - started

    assert 1.0 <= elapsed < 1.5
    # Bytes kept coming all along: no per-operation timeout could have ended it.
    assert site.sent > len(head) + 10


def test_a_stalling_name_lookup_cannot_hold_the_fetch_past_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hostile name server answers slowly; getaddrinfo cannot be interrupted."""
    release = threading.Event()
    real_getaddrinfo = socket.getaddrinfo

    def stalling(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "slow.example":
            release.wait(GIVE_UP_SECONDS)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalling)
    started = time.monotonic()
    try:
        with pytest.raises(ImageFetchError, match=r"timed out after 0\.5s"):
            load_image("http://slow.example/cat.png", allow_address=is_public, timeout=0.5)
    finally:
        release.set()
    assert time.monotonic() - started < 1.0


# --- item 9: every hop checked, the checked address connected to -----------------------------


@pytest.mark.parametrize(
    "internal_host",
    [
        "127.0.0.1",
        "localhost",  # a name: resolved, then checked
        "[::ffff:127.0.0.1]",  # IPv4-mapped: a dual-stack socket would reach 127.0.0.1
        "2130706433",  # 127.0.0.1 as one number, as getaddrinfo reads it
    ],
)
def test_a_redirect_to_an_internal_address_is_checked_and_refused(internal_host: str) -> None:
    with _site({"/secret.png": _reply(_png(RED))}) as internal:
        port = internal.server_address[1]
        target = f"http://{internal_host}:{port}/secret.png"
        with (
            _site({"/image.png": _redirect(target)}, host=str(PUBLIC_STAND_IN)) as public,
            pytest.raises(ImageFetchError, match="non-public address") as refused,
        ):
            load_image(f"{public.url}/image.png", allow_address=_policy)

    assert [path for path, _ in public.requests] == ["/image.png"], "the first hop was fetched"
    assert internal.requests == [], "the second hop was checked before any connection"
    message = str(refused.value)
    assert str(port) not in message and internal_host not in message


def test_the_redirect_chain_itself_works_when_the_policy_allows_every_hop() -> None:
    """The control for the test above: the same chain, all addresses allowed, arrives."""
    with _site({"/secret.png": _reply(_png(RED))}) as internal:
        redirect = _redirect(f"{internal.url}/secret.png")
        with _site({"/image.png": redirect}, host=str(PUBLIC_STAND_IN)) as public:
            image = load_image(f"{public.url}/image.png", allow_address=ANY_ADDRESS)
    assert image.getpixel((0, 0)) == RED


def test_the_fetch_connects_to_the_address_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers a public address once, then an internal one. The one
    lookup is checked and connected to; the Host header still names the host."""
    port = free_port()
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "images.example":
            return real_getaddrinfo(host, *args, **kwargs)
        lookups.append(host)
        answer = str(PUBLIC_STAND_IN) if len(lookups) == 1 else "127.0.0.1"
        return real_getaddrinfo(answer, *args, **kwargs)

    with (
        _site({"/image.png": _reply(_png(RED))}, port=port) as internal,
        _site({"/image.png": _reply(_png(GREEN))}, host=str(PUBLIC_STAND_IN), port=port) as public,
    ):
        monkeypatch.setattr(socket, "getaddrinfo", rebinding)
        image = load_image(f"http://images.example:{port}/image.png", allow_address=_policy)

    assert image.getpixel((0, 0)) == GREEN
    assert lookups == ["images.example"]
    assert public.requests == [("/image.png", f"images.example:{port}")]
    assert internal.requests == []


def test_a_failed_hop_names_no_port_or_address() -> None:
    closed = free_port()
    hidden = f"http://{PUBLIC_STAND_IN}:{closed}/x.png"
    with (
        _site({"/image.png": _redirect(hidden)}, host=str(PUBLIC_STAND_IN)) as public,
        pytest.raises(ImageFetchError, match="connection failed") as failed,
    ):
        load_image(f"{public.url}/image.png", allow_address=_policy)
    assert str(closed) not in str(failed.value)
    assert str(PUBLIC_STAND_IN) not in str(failed.value)


NOT_PUBLIC = [
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::808:808",  # NAT64 of a public address: still the translator's choice
    "64:ff9b:1::a00:1",  # local-use NAT64
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::808:808",  # IPv4-compatible, public inside
    "::ffff:7f00:1",  # IPv4-mapped
    "::ffff:808:808",
    "2002:7f00:1::1",  # 6to4 around 127.0.0.1
    "fec0::1",  # site-local
    "ff02::1",  # multicast
    "ff0e::1",  # global-scope multicast
    "224.0.0.251",
    "239.255.255.250",
    "127.0.0.1",
    "10.0.0.1",
    "100.64.0.1",
    "169.254.169.254",
    "0.0.0.0",
    "::1",
    "fe80::1",
    "fd00::1",
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_addresses_that_embed_another_or_reach_many_are_not_public(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))
    url = f"http://[{address}]/cat.png" if ":" in address else f"http://{address}/cat.png"
    with pytest.raises(ImageFetchError, match="non-public address"):
        load_image(url, allow_address=is_public)


@pytest.mark.parametrize("address", ["8.8.8.8", "2606:4700:4700::1111"])
def test_public_unicast_addresses_are_public(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))
    check_fetchable(
        f"http://[{address}]/" if ":" in address else f"http://{address}/", allow_private=False
    )


@pytest.mark.parametrize("address", ["64:ff9b::a00:1", "::a00:1", "::ffff:a00:1", "ff0e::1"])
def test_such_image_urls_are_refused_at_submit(client: Any, account: Any, address: str) -> None:
    body = {"model": KLING_I2V, "input": {"image_url": f"http://[{address}]/cat.png"}}
    response = client.post("/v1/video/generate", json=body, headers=account.headers)
    assert response.status_code == 422, response.json
    assert "input.image_url" in response.json["error"]["fields"]
