"""Load the source image for image-to-video from whatever URL the client sent.

Every failure becomes ImageFetchError with a message fit to show the client, because a bad
image URL is the client's problem to fix, not a server error.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import time
import urllib.parse
import urllib.request

import httpx
from PIL import Image, ImageOps


class ImageFetchError(ValueError):
    """The image URL could not be turned into an image; the message is safe to show clients."""


def load_image(
    url: str, *, max_bytes: int = 20 * 1024 * 1024, timeout: float = 15.0
) -> Image.Image:
    """Fetch a data:, file:// or http(s):// URL and return it as a fully loaded RGB image.

    For HTTP, `timeout` applies to each network operation and also caps the whole download,
    so a server trickling bytes cannot hold a worker for long.
    """
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "data":
        data = _read_data_url(url)
    elif scheme == "file":
        data = _read_file_url(url, max_bytes)
    elif scheme in ("http", "https"):
        data = _read_http_url(url, max_bytes, timeout)
    else:
        raise ImageFetchError(
            f"unsupported image URL scheme {scheme or '(none)'!r}; use http(s), data or file"
        )
    if len(data) > max_bytes:
        raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
    return _decode_image(data)


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


def _read_file_url(url: str, max_bytes: int) -> bytes:
    parts = urllib.parse.urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ImageFetchError(f"file URL must be local, got host {parts.netloc!r}")
    path = urllib.request.url2pathname(parts.path)
    if not os.path.isabs(path):
        raise ImageFetchError(f"file URL must hold an absolute path, got {path!r}")
    try:
        with open(path, "rb") as handle:
            # Read one byte past the limit so "too large" is detected without reading it all.
            return handle.read(max_bytes + 1)
    except OSError as exc:
        raise ImageFetchError(f"cannot read image file {path}: {exc.strerror}") from exc


def _read_http_url(url: str, max_bytes: int, timeout: float) -> bytes:
    deadline = time.monotonic() + timeout
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=timeout) as response:
            if response.is_error:
                raise ImageFetchError(f"image URL returned HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > max_bytes:
                raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise ImageFetchError(f"image is larger than the {max_bytes} byte limit")
                if time.monotonic() > deadline:
                    raise ImageFetchError(f"timed out after {timeout:g}s fetching image URL")
            return bytes(body)
    except httpx.TimeoutException as exc:
        raise ImageFetchError(f"timed out after {timeout:g}s fetching image URL") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise ImageFetchError(f"could not fetch image URL: {exc}") from exc


def _decode_image(data: bytes) -> Image.Image:
    try:
        with Image.open(io.BytesIO(data)) as image:
            # Phones store rotation in EXIF; apply it so the video is not sideways.
            upright = ImageOps.exif_transpose(image)
            return upright.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFetchError("URL does not point to a supported image") from exc
