"""Read facts about a video file and grab a poster frame, so stored media is verified, not trusted.

Anything that fails to open or decode is reported as InvalidVideo, one error type callers can map
to "the provider gave us a broken file" without knowing PyAV's exception zoo.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import av
import av.container
import av.video.stream
from PIL import Image

_MP4_FORMATS = {"mp4", "mov"}


class InvalidVideo(ValueError):
    """The file is not a video we can decode (empty, corrupt, or without a video stream)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the API needs to describe a stored video: length, size, codec and HTTP type."""

    duration_seconds: float
    width: int
    height: int
    codec: str
    content_type: str


def probe_video(path: pathlib.Path) -> VideoInfo:
    """Open `path`, decode its first keyframe to prove it plays, and report its properties."""
    with _open_video(path) as (container, stream):
        duration = _duration_seconds(container, stream, path)
        stream.codec_context.skip_frame = "NONKEY"
        try:
            next(container.decode(stream))
        except (av.FFmpegError, StopIteration) as exc:
            raise InvalidVideo(f"{path.name}: video stream has no decodable frames") from exc
        formats = set(container.format.name.split(","))
        return VideoInfo(
            duration_seconds=duration,
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            content_type="video/mp4" if formats & _MP4_FORMATS else "application/octet-stream",
        )


def write_poster(
    video_path: pathlib.Path,
    poster_path: pathlib.Path,
    *,
    at_fraction: float = 0.25,
    max_width: int = 640,
) -> None:
    """Save a JPEG of the keyframe at or before `at_fraction` of the video, at most
    `max_width` wide.

    A frame a little way in is more representative than the first, which is often black.
    Only that keyframe is decoded: any other frame would need every frame since the
    keyframe before it decoded first (a 5 s clip with one keyframe: 30 frames for a poster
    at a quarter, ≈ 9 ms against ≈ 3–5 ms). The JPEG appears atomically so a half-written
    poster is never served.
    """
    if not 0 <= at_fraction <= 1:
        raise ValueError(f"at_fraction must be within [0, 1], got {at_fraction!r}")
    if max_width <= 0:
        raise ValueError(f"max_width must be positive, got {max_width!r}")
    with _open_video(video_path) as (container, stream):
        target = _duration_seconds(container, stream, video_path) * at_fraction
        stream.codec_context.skip_frame = "NONKEY"
        try:
            # Seeking lands on the keyframe at or before the target; the decoder skips the rest.
            container.seek(round(target * av.time_base), backward=True)
            frame = next(container.decode(stream), None)
        except av.FFmpegError as exc:
            raise InvalidVideo(f"{video_path.name}: cannot decode a poster frame: {exc}") from exc
        if frame is None:
            raise InvalidVideo(f"{video_path.name}: video stream has no decodable frames")
        image = frame.to_image()

    if image.width > max_width:
        height = max(1, round(image.height * max_width / image.width))
        image = image.resize((max_width, height), Image.Resampling.LANCZOS)
    poster_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = poster_path.with_name(f".{poster_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        image.save(tmp_path, format="JPEG", quality=85)
        os.replace(tmp_path, poster_path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextmanager
def _open_video(
    path: pathlib.Path,
) -> Iterator[tuple[av.container.InputContainer, av.video.stream.VideoStream]]:
    """Open the first video stream, turning every "not a video" failure into InvalidVideo.

    A missing file stays FileNotFoundError: that is a bug in the caller, not a bad upload.
    """
    if not path.is_file():
        raise FileNotFoundError(f"no such video file: {path}")
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        raise InvalidVideo(f"{path.name} is not a readable video file") from exc
    with container:
        if not container.streams.video:
            raise InvalidVideo(f"{path.name}: contains no video stream")
        yield container, container.streams.video[0]


def _duration_seconds(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    path: pathlib.Path,
) -> float:
    if container.duration is not None:
        return container.duration / av.time_base
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    raise InvalidVideo(f"{path.name}: duration is unknown")
