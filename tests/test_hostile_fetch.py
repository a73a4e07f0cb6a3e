"""Hostile image URLs (issue 11, items 8-10): hosts that trickle, redirect inwards, rebind
their names or serve bombs cannot hold a worker, reach an internal address or exhaust its
memory.

Against real HTTP servers on loopback threads. 127.0.0.2 stands in for a public host: the
policy these tests pass is the real one (`is_public`) plus that one address, so everything
else on the way, the internal 127.0.0.1 included, meets the production check. The last test
runs a bomb through the real worker (the session's) and the API."""

from __future__ import annotations

import base64
import http.server
import io
import ipaddress
import json
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from PIL import Image

from shared.media.fetch import ImageFetchError, load_image
from shared.media.url_policy import Address, address_policy, check_fetchable, is_public
from shared.runtime import Runtime
from tests.helpers import KLING_I2V, balance, generate, job_entries, wait_for_job
from tests.stack import ROOT, free_port
from tests.waiting import wait_for

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


def _endless_body(handler: _Handler) -> None:
    """A body with no length that never ends (up to 256 MiB, a safety stop)."""
    handler.send_bytes(b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n\r\n")
    chunk = b"\0" * 65536
    while handler.server.sent < 256 * 2**20 and handler.send_bytes(chunk):
        pass
    handler.close_connection = True


def _reset(handler: _Handler) -> None:
    """Hang up with a TCP reset instead of an answer (a close with a zero linger sends RST)."""
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()
    handler.close_connection = True


def _declares_a_huge_body(handler: _Handler) -> None:
    handler.send_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\n")
    handler.server.stop.wait(GIVE_UP_SECONDS)


# --- images ---------------------------------------------------------------------------------


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _blank_png(width: int, height: int) -> bytes:
    """A valid, black, 1-bit greyscale PNG written row by row, so making a 13000×13000 one
    (about 20 KiB) never holds its pixels: Pillow would need 169 MB to create it."""
    row = bytes(1 + (width + 7) // 8)  # filter type 0, then the packed pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


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


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("file:///etc/passwd", "not http"),
        ("data:image/png;base64,AAAA", "not http"),
        ("/loop", "redirects more than 5 times"),
    ],
)
def test_a_redirect_only_leads_to_http_and_not_forever(location: str, message: str) -> None:
    with (
        _site({"/loop": _redirect(location)}, host=str(PUBLIC_STAND_IN)) as public,
        pytest.raises(ImageFetchError, match=message),
    ):
        load_image(f"{public.url}/loop", allow_address=_policy)


def test_a_failed_hop_names_no_port_or_address() -> None:
    closed = free_port()
    hidden = f"http://{PUBLIC_STAND_IN}:{closed}/x.png"
    with (
        _site({"/image.png": _redirect(hidden)}, host=str(PUBLIC_STAND_IN)) as public,
        pytest.raises(ImageFetchError) as failed,
    ):
        load_image(f"{public.url}/image.png", allow_address=_policy)
    assert str(failed.value) == "could not fetch image URL: the connection was refused"


def test_a_server_that_resets_the_connection_is_said_so() -> None:
    """It said "the connection failed", as for a server that is down."""
    with _site({"/image.png": _reset}) as site, pytest.raises(ImageFetchError) as failed:
        load_image(f"{site.url}/image.png", allow_address=ANY_ADDRESS)
    assert str(failed.value) == "could not fetch image URL: the connection was reset"


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


# --- item 10: bytes and pixels capped -------------------------------------------------------


def test_an_endless_body_is_cut_at_the_byte_cap() -> None:
    cap = 1_000_000
    with _site({"/endless": _endless_body}) as site:
        with pytest.raises(ImageFetchError, match=f"larger than the {cap} byte limit"):
            load_image(f"{site.url}/endless", allow_address=ANY_ADDRESS, max_bytes=cap)
        wait_for(site.cut.is_set, timeout=5, message="the server never saw the client hang up")
    # What the server sent before it noticed: the cap and the socket buffers, no more.
    assert site.sent < cap + 64 * 2**20


def test_a_declared_huge_body_is_refused_before_reading_it() -> None:
    with _site({"/huge": _declares_a_huge_body}) as site:
        started = time.monotonic()
        with pytest.raises(ImageFetchError, match="larger than"):
            load_image(f"{site.url}/huge", allow_address=ANY_ADDRESS)
    assert time.monotonic() - started < 1.0


def test_the_hand_written_png_is_a_real_image() -> None:
    """So the bombs below are refused for their size, not for being broken files."""
    image = load_image(_data_url(_blank_png(70, 9)), allow_address=is_public)
    assert image.size == (70, 9)
    assert image.getpixel((69, 8)) == (0, 0, 0)


@pytest.mark.parametrize(
    ("size", "max_pixels", "refused"),
    [
        ((9000, 9000), None, True),  # 81 Mpx: under Pillow's own warning (89 Mpx)
        ((100, 100), 10_000, False),
        ((100, 101), 10_000, True),
    ],
)
def test_the_pixel_cap_is_read_from_the_header(
    size: tuple[int, int], max_pixels: int | None, refused: bool
) -> None:
    url = _data_url(_blank_png(*size))
    limit = {} if max_pixels is None else {"max_pixels": max_pixels}
    if refused:
        with pytest.raises(ImageFetchError, match=rf"pixel limit \({size[0]}×{size[1]}\)"):
            load_image(url, allow_address=is_public, **limit)
    else:
        assert load_image(url, allow_address=is_public, **limit).size == size


_MEASURE = """
import json, resource, sys, time
from shared.media.fetch import ImageFetchError, load_image
from shared.media.url_policy import address_policy

peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
try:
    load_image(sys.argv[1], allow_address=address_policy(allow_private=True))
    error = None
except ImageFetchError as exc:
    error = str(exc)
print(json.dumps({
    "error": error,
    "seconds": time.monotonic() - started,
    "peak_growth_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before,
}))
"""


def test_an_image_bomb_is_refused_quickly_with_bounded_memory() -> None:
    """The issue's bomb: a 13000×13000 PNG of some 20 KiB, which decoded took a worker to
    1.5 GB. Fetched over HTTP in a fresh process, whose peak memory is measured."""
    bomb = _blank_png(13000, 13000)
    assert len(bomb) < 32 * 1024
    with _site({"/bomb.png": _reply(bomb)}) as site:
        measured = subprocess.run(
            [sys.executable, "-c", _MEASURE, f"{site.url}/bomb.png"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    outcome = json.loads(measured.stdout)
    assert "pixel limit (13000×13000)" in outcome["error"]
    assert outcome["seconds"] < 2
    assert outcome["peak_growth_kib"] < 40 * 1024  # decoding would take 169 MB, then 507 MB


def test_a_job_with_an_image_bomb_fails_quickly_and_releases_its_hold(
    client: Any, account: Any, runtime: Runtime
) -> None:
    """Through the API and the real worker: the render refuses the image, the job ends
    `failed` with a clear message within seconds, and nothing stays held or charged."""
    before = balance(runtime, account)
    started = time.monotonic()
    accepted = generate(
        client,
        account,
        "A bomb [sim latency=0.5]",
        model=KLING_I2V,
        image_url=_data_url(_blank_png(13000, 13000)),
    )

    job = wait_for_job(client, account, accepted["job_id"], timeout=20)

    assert job["status"] == "failed", job
    assert job["error"]["code"] == "provider_error"
    assert "could not load image_url: image has more than" in job["error"]["message"]
    assert time.monotonic() - started < 10
    entries = job_entries(runtime, job["id"])
    assert entries["release"] == entries["hold"]
    assert "capture" not in entries
    assert balance(runtime, account) == before
