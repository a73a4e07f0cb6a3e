"""Load the source image for image-to-video from the URL the client sent.

Every failure becomes ImageFetchError with a message fit to show the client: a bad image URL
is the client's problem to fix, not a server error. No message names an address, a port or a
host the client did not write (a redirect's target may be an internal one).

What a hostile URL cannot do here:
- hold a worker: one deadline covers name resolution, connect, TLS, response headers and
  body. httpx's timeouts bound each socket operation, so a host that sends its headers one
  byte at a time never trips them; here every operation gets only the time left.
- reach an internal address: each hop, redirects included, is resolved once, every address
  is checked by the policy, and the connection goes to exactly those addresses (a second
  lookup could answer otherwise: DNS rebinding). Redirects are followed, not refused: image
  hosts and CDNs use them (http to https, share links to files).
- exhaust memory: the body is read to `max_bytes` at most, and the pixel count is read from
  the image's header and refused above `max_pixels` before any pixel is decoded.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import queue
import ssl
import threading
import time
import urllib.parse
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import httpcore
import httpx
from PIL import Image, ImageOps

from shared.media.url_policy import Address, AddressPolicy, resolve

MAX_BYTES = 20 * 1024 * 1024
# A 24-megapixel camera's 6000×4000 fits; decoded, it is 72 MB in RGB. The pod's memory is
# shared by the worker's children, and a 13000×13000 PNG of 27 KiB would need 507 MB.
MAX_PIXELS = 25_000_000
MAX_REDIRECTS = 5
# The formats image-to-video models accept; Pillow's rarer decoders are not exposed to
# whatever a client uploads.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF")

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_REQUEST_HEADERS = [
    (b"Accept", b"image/*"),
    (b"Accept-Encoding", b"identity"),  # the body is handed to Pillow as it comes
    (b"User-Agent", b"naive-video-image-fetch"),
]


class ImageFetchError(ValueError):
    """The image URL could not be turned into an image; the message is safe to show clients."""


def load_image(
    url: str,
    *,
    allow_address: AddressPolicy,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    timeout: float = 15.0,
) -> Image.Image:
    """Fetch a data: or http(s):// URL and return it as a fully loaded RGB image.

    For HTTP, `timeout` is the deadline of the whole fetch, redirects included, and only
    addresses that `allow_address` accepts are connected to."""
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "data":
        data = _read_data_url(url)
    elif scheme in ("http", "https"):
        data = _read_http_url(url, allow_address, max_bytes, timeout)
    else:
        raise ImageFetchError(
            f"unsupported image URL scheme {scheme or '(none)'!r}; use http(s) or data"
        )
    if len(data) > max_bytes:
        raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
    return _decode_image(data, max_pixels)


def _read_data_url(url: str) -> bytes:
    header, comma, payload = url[len("data:") :].partition(",")
    if not comma:
        raise ImageFetchError("malformed data URL: missing ','")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except binascii.Error as exc:
            raise ImageFetchError("malformed data URL: invalid base64") from exc
    return urllib.parse.unquote_to_bytes(payload)


def _read_http_url(url: str, allow_address: AddressPolicy, max_bytes: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            target = _http_url(url)
            addresses = _resolve_within(target.host, deadline)
            if not all(allow_address(address) for address in addresses):
                raise ImageFetchError(
                    "image URL leads to a private, loopback or otherwise non-public address"
                )
            with pinned_exchange(
                "GET", target, addresses, headers=_REQUEST_HEADERS, deadline=deadline
            ) as response:
                location = _header(response.headers, b"location")
                if response.status in _REDIRECT_STATUSES and location is not None:
                    url = str(target.join(location.decode("latin-1")))
                    continue
                if not 200 <= response.status < 300:
                    raise ImageFetchError(f"image URL returned HTTP {response.status}")
                return _read_body(response, max_bytes)
    except httpcore.TimeoutException as exc:
        raise ImageFetchError(f"timed out after {timeout:g}s fetching image URL") from exc
    except httpcore.NetworkError as exc:
        raise ImageFetchError(f"could not fetch image URL: {connection_failure(exc)}") from exc
    except httpcore.ProtocolError as exc:
        raise ImageFetchError("could not fetch image URL: the answer is not valid HTTP") from exc
    except httpx.InvalidURL as exc:  # from joining a redirect's Location
        raise ImageFetchError("image URL redirects to an invalid URL") from exc
    raise ImageFetchError(f"image URL redirects more than {MAX_REDIRECTS} times")


def connection_failure(exc: Exception) -> str:
    """How the connection failed: refused (nothing listens, the server is down) and reset
    (it hung up) are told apart. The socket's error is `exc`'s context: httpcore raises its
    own while handling it, and its pool re-raises that `from None`, dropping the cause."""
    if isinstance(exc.__context__, ConnectionRefusedError):
        return "the connection was refused"
    if isinstance(exc.__context__, ConnectionResetError):
        return "the connection was reset"
    return "the connection failed"


def _http_url(url: str) -> httpx.URL:
    """`url` parsed and normalised (IDNA host, escaped path); only http(s) with a host."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ImageFetchError("image URL is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ImageFetchError("image URL leads to a URL that is not http(s)")
    return parsed


def _resolve_within(host: str, deadline: float) -> list[Address]:
    """`resolve(host)` within the deadline. getaddrinfo cannot be interrupted and a hostile
    name server can stall it for tens of seconds, so it runs in a daemon thread that is
    left to finish on its own if it overstays."""
    answer: queue.SimpleQueue[list[Address] | OSError | UnicodeError] = queue.SimpleQueue()

    def lookup() -> None:
        try:
            answer.put(resolve(host))
        except (OSError, UnicodeError) as exc:
            answer.put(exc)

    threading.Thread(target=lookup, name="image-url-dns", daemon=True).start()
    try:
        addresses = answer.get(timeout=_time_left(deadline, httpcore.ConnectTimeout))
    except queue.Empty:
        raise httpcore.ConnectTimeout("name resolution overstayed the deadline") from None
    if isinstance(addresses, Exception) or not addresses:
        raise ImageFetchError("could not fetch image URL: its host name does not resolve")
    return addresses


def _time_left(deadline: float, expired: type[httpcore.TimeoutException]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the fetch deadline has passed")
    return left


@contextmanager
def pinned_exchange(
    method: str,
    target: httpx.URL,
    addresses: list[Address],
    *,
    headers: list[tuple[bytes, bytes]],
    deadline: float,
    connect_deadline: float | None = None,
    content: bytes | None = None,
) -> Iterator[httpcore.Response]:
    """One HTTP exchange with `target`, connected to exactly `addresses` (checked by the
    caller) and held to `deadline`; the response streams until the block ends."""
    with (
        httpcore.ConnectionPool(
            ssl_context=ssl_context(),
            network_backend=PinnedBackend(addresses, deadline, connect_deadline),
            max_connections=1,
        ) as pool,
        pool.stream(
            method,
            httpcore.URL(
                scheme=target.raw_scheme,
                host=target.raw_host,
                port=target.port,
                target=target.raw_path,
            ),
            headers=[(b"Host", target.netloc), *headers],
            content=content,
        ) as response,
    ):
        yield response


@functools.cache
def ssl_context() -> ssl.SSLContext:
    """The context httpx verifies with by default (certifi's roots), built once."""
    return httpx.create_ssl_context()


class PinnedBackend(httpcore.NetworkBackend):
    """Connects to the checked addresses, whatever host name httpcore connects for (the URL
    keeps its name, so Host, SNI and certificate checks are the name's), and holds every
    socket operation to the fetch's deadline instead of httpcore's per-operation timeouts;
    connecting, to `connect_deadline` if that is sooner."""

    def __init__(
        self, addresses: list[Address], deadline: float, connect_deadline: float | None = None
    ) -> None:
        self._addresses = addresses
        self._deadline = deadline
        self._connect_deadline = min(deadline, connect_deadline or deadline)
        self._sockets = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        failure = httpcore.ConnectError("no address to connect to")
        for address in self._addresses:
            try:
                stream = self._sockets.connect_tcp(
                    str(address),
                    port,
                    timeout=_time_left(self._connect_deadline, httpcore.ConnectTimeout),
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                failure = exc
                continue
            return _DeadlineStream(stream, self._deadline)
        raise failure


class _DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every operation may take only the time left until the deadline.

    CPython applies a socket's timeout to a whole recv, send or TLS handshake call, so no
    single operation outlives the deadline, and no sequence of them does either."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _time_left(self._deadline, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _time_left(self._deadline, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(self._deadline, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._stream.start_tls(ssl_context, server_hostname, left), self._deadline
        )

    def get_extra_info(self, info: str) -> object:
        return self._stream.get_extra_info(info)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    return next((value for key, value in headers if key.lower() == name), None)


def _read_body(response: httpcore.Response, max_bytes: int) -> bytes:
    """The body, refused as soon as it is known to pass `max_bytes` (by its declared length,
    or by what arrived): the rest is never read."""
    declared = _header(response.headers, b"content-length") or b""
    if declared.isdigit() and int(declared) > max_bytes:
        raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
    body = bytearray()
    for chunk in response.iter_stream():
        body += chunk
        if len(body) > max_bytes:
            raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
    return bytes(body)


def _decode_image(data: bytes, max_pixels: int) -> Image.Image:
    """Decode at most `max_pixels`: Image.open reads only the header, so the size is known
    before a pixel is decoded."""
    too_many = f"image has more than the {max_pixels} pixel limit"
    try:
        with warnings.catch_warnings():
            # Pillow warns past its own limit (89 Mpx) and refuses past twice that; ours is
            # lower and checked right below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except Image.DecompressionBombError as exc:
        raise ImageFetchError(too_many) from exc
    except (OSError, ValueError) as exc:
        raise ImageFetchError("URL does not point to a supported image") from exc
    with image:
        if image.width * image.height > max_pixels:
            raise ImageFetchError(f"{too_many} ({image.width}×{image.height})")
        try:
            # Phones store rotation in EXIF; apply it so the video is not sideways.
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
        except (OSError, ValueError) as exc:
            raise ImageFetchError("URL does not point to a supported image") from exc
