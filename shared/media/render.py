"""Render short, real H.264 MP4 clips locally (the stand-in for a hosted video model).

The output must be a file any player accepts and that our own probe can read back, so it is
encoded with PyAV/libx264 rather than assembled by hand. Rendering is deterministic for the same
inputs so tests and caches can rely on it.
"""

from __future__ import annotations

import bisect
import colorsys
import hashlib
import math
import os
import pathlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import av
import av.container
import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

FRAME_SIZES: dict[str, tuple[int, int]] = {
    "16:9": (640, 360),
    "9:16": (360, 640),
    "1:1": (480, 480),
}

# Image-to-video zooms from 1.0x to this factor over the clip: slow enough to read as a pan.
_MAX_ZOOM = 1.15
# Text-to-video background scrolls one full period in this many seconds.
_SCROLL_PERIOD_S = 6.0
_ENCODER_OPTIONS = {"preset": "ultrafast", "crf": "28"}
# The optional soundtrack: a soft tone, mono AAC (FFmpeg's native encoder, in PyAV's wheels),
# about −30 dBFS, so a player shows and plays an audio track without it being loud. Encoding
# it costs about 7 ms per second of audio here (≈ 35 ms for 5 s, against ≈ 250 ms for the
# picture); without audio none of it runs.
_AUDIO_RATE = 24_000
_AUDIO_BIT_RATE = 32_000
_AUDIO_LEVEL = 0.03
_AUDIO_TONE_HZ = 220.0
_AUDIO_FADE_S = 0.05


@dataclass(frozen=True)
class _Overlay:
    """A pre-rendered RGBA layer, cropped to its visible box, blended onto frames in numpy.

    Laying text out once and blending a small array per frame keeps Pillow out of the hot loop.
    """

    x: int
    y: int
    premultiplied: np.ndarray  # float32 (h, w, 3): rgb * alpha
    inverse_alpha: np.ndarray  # float32 (h, w, 1): 1 - alpha

    @classmethod
    def from_layer(cls, layer: Image.Image) -> _Overlay | None:
        box = layer.getbbox()
        if box is None:
            return None
        rgba = np.asarray(layer.crop(box), dtype=np.float32) / 255.0
        alpha = rgba[:, :, 3:4]
        return cls(box[0], box[1], rgba[:, :, :3] * alpha * 255.0, 1.0 - alpha)

    def apply(self, frame: np.ndarray) -> None:
        h, w = self.inverse_alpha.shape[:2]
        region = frame[self.y : self.y + h, self.x : self.x + w]
        region[:] = region * self.inverse_alpha + self.premultiplied


def render_video(
    out_path: pathlib.Path,
    *,
    prompt: str,
    duration_seconds: float,
    aspect_ratio: str = "16:9",
    image: Image.Image | None = None,
    fps: int = 24,
    audio: bool = False,
) -> None:
    """Render an MP4 to out_path: an animated prompt card, or a Ken Burns zoom over `image`;
    with `audio`, also a quiet AAC track as long as the video.

    The file appears atomically (temp file + os.replace), so readers and concurrent renders of
    the same path never see a partial video.
    """
    if aspect_ratio not in FRAME_SIZES:
        raise ValueError(
            f"unknown aspect ratio {aspect_ratio!r}; expected one of {sorted(FRAME_SIZES)}"
        )
    if not (math.isfinite(duration_seconds) and duration_seconds > 0):
        raise ValueError(f"duration_seconds must be positive, got {duration_seconds!r}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    width, height = FRAME_SIZES[aspect_ratio]
    frame_count = max(1, round(duration_seconds * fps))
    if image is None:
        frames = _text_frames(prompt, width, height, frame_count, fps)
    else:
        frames = _image_frames(image, prompt, width, height, frame_count)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = out_path.with_name(f".{out_path.name}.{uuid.uuid4().hex}.tmp")
    try:
        _encode(
            tmp_path, frames, width, height, fps, audio_seconds=frame_count / fps if audio else None
        )
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _encode(
    path: pathlib.Path,
    frames: Iterator[np.ndarray],
    width: int,
    height: int,
    fps: int,
    *,
    audio_seconds: float | None,
) -> None:
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=_ENCODER_OPTIONS)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        time_base = Fraction(1, fps)
        stream.codec_context.time_base = time_base
        if audio_seconds is not None:
            # All of it first: it is small, and the muxer interleaves packets by time.
            _encode_audio(container, audio_seconds)
        for index, array in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def _encode_audio(container: av.container.OutputContainer, seconds: float) -> None:
    """A quiet tone of `seconds`, faded in and out (no click), as mono AAC."""
    stream = container.add_stream("aac", rate=_AUDIO_RATE, layout="mono")
    stream.codec_context.bit_rate = _AUDIO_BIT_RATE
    count = round(seconds * _AUDIO_RATE)
    t = np.arange(count, dtype=np.float32) / _AUDIO_RATE
    envelope = np.clip(np.minimum(t, seconds - t) / _AUDIO_FADE_S, 0, 1)
    samples = (_AUDIO_LEVEL * envelope * np.sin(math.tau * _AUDIO_TONE_HZ * t)).astype(np.float32)
    time_base = Fraction(1, _AUDIO_RATE)
    chunk = stream.codec_context.frame_size or 1024  # the encoder takes frames of this size
    for start in range(0, count, chunk):
        frame = av.AudioFrame.from_ndarray(
            samples[None, start : start + chunk], format="fltp", layout="mono"
        )
        frame.sample_rate = _AUDIO_RATE
        frame.pts = start
        frame.time_base = time_base
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _text_frames(
    prompt: str, width: int, height: int, frame_count: int, fps: int
) -> Iterator[np.ndarray]:
    """Scrolling two-colour gradient, a drifting disc and the prompt, all seeded by the prompt."""
    seed = hashlib.sha256(prompt.encode("utf-8")).digest()
    hue = seed[0] / 256
    # Mid-dark background and a bright disc in the opposite hue keep white text readable.
    color_a = _hsv(hue, 0.65, 0.55)
    color_b = _hsv(hue + 0.15 + seed[1] / 1024, 0.75, 0.3)
    disc_color = _hsv(hue + 0.5, 0.45, 1.0)
    phase_x, phase_y = seed[2] / 256 * math.tau, seed[3] / 256 * math.tau

    # Periodic in x, so rolling it horizontally never shows a seam.
    xs = 0.5 - 0.5 * np.cos(np.linspace(0, math.tau, width, endpoint=False, dtype=np.float32))
    ys = np.linspace(0, 0.35, height, dtype=np.float32)
    mix = np.clip(xs[None, :] + ys[:, None], 0, 1)[:, :, None]
    background = (color_a * (1 - mix) + color_b * mix).astype(np.uint8)

    radius = min(width, height) // 8
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    disc_alpha = np.clip(radius + 0.5 - np.hypot(xx, yy), 0, 1).astype(np.float32)[:, :, None]
    disc_paint = disc_color * disc_alpha
    disc_keep = 1 - disc_alpha

    font_size = max(14, min(width, height) // 12)
    overlay = _text_overlay(prompt, width, height, font_size, max_lines=5, caption=False)

    for index in range(frame_count):
        t = index / fps
        frame = np.roll(background, round(t * width / _SCROLL_PERIOD_S), axis=1)
        cx = round(width / 2 + (width / 2 - radius - 1) * math.sin(t * math.tau / 4 + phase_x))
        cy = round(height / 2 + (height / 2 - radius - 1) * math.sin(t * math.tau / 3 + phase_y))
        region = frame[cy - radius : cy + radius + 1, cx - radius : cx + radius + 1]
        region[:] = region * disc_keep + disc_paint
        if overlay is not None:
            overlay.apply(frame)
        yield frame


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1, saturation, value), dtype=np.float32) * 255


def _image_frames(
    image: Image.Image, prompt: str, width: int, height: int, frame_count: int
) -> Iterator[np.ndarray]:
    """Cover-crop the image once at the final zoom's resolution, then zoom into its centre."""
    big_w, big_h = round(width * _MAX_ZOOM), round(height * _MAX_ZOOM)
    source = ImageOps.fit(image.convert("RGB"), (big_w, big_h), Image.Resampling.LANCZOS)
    font_size = max(12, min(width, height) // 18)
    overlay = _text_overlay(prompt, width, height, font_size, max_lines=2, caption=True)
    for index in range(frame_count):
        progress = index / (frame_count - 1) if frame_count > 1 else 0.0
        zoom = 1 + (_MAX_ZOOM - 1) * progress
        box_w, box_h = big_w / zoom, big_h / zoom
        left, top = (big_w - box_w) / 2, (big_h - box_h) / 2
        view = source.resize(
            (width, height), Image.Resampling.BILINEAR, box=(left, top, left + box_w, top + box_h)
        )
        frame = np.array(view)
        if overlay is not None:
            overlay.apply(frame)
        yield frame


def _text_overlay(
    prompt: str, width: int, height: int, font_size: int, *, max_lines: int, caption: bool
) -> _Overlay | None:
    """Lay out the prompt once: centred card text, or a caption on a dim band at the bottom."""
    text = " ".join(prompt.split())
    if not text:
        return None
    font = ImageFont.load_default(size=font_size)
    margin = font_size
    lines = _wrap(text, font, width - 2 * margin, max_lines)
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    spacing = font_size // 4
    block_h = len(lines) * font_size + (len(lines) - 1) * spacing
    if caption:
        band_top = height - block_h - 2 * margin
        draw.rectangle((0, band_top, width, height), fill=(0, 0, 0, 140))
        center_y = band_top + margin + block_h / 2
    else:
        center_y = height / 2
    draw.multiline_text(
        (width / 2, center_y),
        "\n".join(lines),
        font=font,
        fill=(255, 255, 255, 255),
        anchor="mm",
        align="center",
        spacing=spacing,
        stroke_width=max(1, font_size // 14),
        stroke_fill=(0, 0, 0, 255),
    )
    return _Overlay.from_layer(layer)


def _wrap(
    text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, max_width: int, max_lines: int
) -> list[str]:
    """Greedy pixel-width word wrap; overlong words are split, excess lines end in an ellipsis.

    Stops once the text overflows `max_lines`, so a huge prompt costs no more than a short one.
    """
    lines: list[str] = []
    current = ""
    # No line can hold more characters than it has pixels, so the rest can never be shown.
    for word in text[: max_lines * max_width].split(" "):
        candidate = f"{current} {word}" if current else word
        if font.getlength(candidate) <= max_width:
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while len(lines) <= max_lines and font.getlength(current) > max_width:
            widths = [font.getlength(current[:n]) for n in range(1, len(current) + 1)]
            fits = bisect.bisect_right(widths, max_width)
            cut = max(1, fits)
            lines.append(current[:cut])
            current = current[cut:]
        if len(lines) > max_lines:
            break
    lines.append(current)
    if len(lines) > max_lines:
        last = lines[max_lines - 1]
        while last and font.getlength(last + "…") > max_width:
            last = last[:-1]
        lines = [*lines[: max_lines - 1], last.rstrip() + "…"]
    return lines
