"""Tests for shared.media: rendered videos are real, playable, deterministic MP4s."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import pathlib
import socket
import threading
from collections.abc import Iterator

import av
import numpy as np
import pytest
from PIL import Image

from shared.catalog.builtin import all_models, normalize_input
from shared.media.fetch import ImageFetchError, load_image
from shared.media.probe import InvalidVideo, probe_video, write_poster
from shared.media.render import FRAME_SIZES, render_video
from shared.media.url_policy import address_policy, is_public
from shared.providers.simulator import SimulatorProvider
from tests.helpers import KLING_T2V


def _decode_frames(path: pathlib.Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]


def _first_frame(path: pathlib.Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24")


def _digest(frame: np.ndarray) -> str:
    return hashlib.sha256(frame.tobytes()).hexdigest()


def _png_bytes(color: tuple[int, int, int], size: tuple[int, int] = (200, 120)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _data_url(image_bytes: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image_bytes).decode()


# The local test servers listen on loopback, as on a closed network.
ANY_ADDRESS = address_policy(allow_private=True)


# --- render + probe -------------------------------------------------------------------------


def test_text_to_video_is_a_playable_h264_mp4(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "nested" / "dir" / "clip.mp4"
    render_video(out, prompt="A lighthouse in a storm", duration_seconds=2.0)

    info = probe_video(out)
    assert info.codec == "h264"
    assert (info.width, info.height) == (640, 360)
    assert info.duration_seconds == pytest.approx(2.0, abs=1 / 24)
    assert info.content_type == "video/mp4"

    frames = _decode_frames(out)
    assert len(frames) == 48
    assert _digest(frames[0]) != _digest(frames[1]), "something must move every frame"
    assert list(out.parent.iterdir()) == [out], "no temp files may be left behind"


@pytest.mark.parametrize("aspect_ratio", ["9:16", "1:1"])
def test_other_aspect_ratios_have_their_frame_size(
    tmp_path: pathlib.Path, aspect_ratio: str
) -> None:
    out = tmp_path / "clip.mp4"
    render_video(out, prompt="vertical", duration_seconds=0.5, aspect_ratio=aspect_ratio)

    info = probe_video(out)
    assert (info.width, info.height) == FRAME_SIZES[aspect_ratio]
    assert info.duration_seconds == pytest.approx(0.5, abs=1 / 24)


def test_same_inputs_render_the_same_frames(tmp_path: pathlib.Path) -> None:
    first, second, other = tmp_path / "a.mp4", tmp_path / "b.mp4", tmp_path / "c.mp4"
    render_video(first, prompt="a red fox", duration_seconds=0.5)
    render_video(second, prompt="a red fox", duration_seconds=0.5)
    render_video(other, prompt="a blue whale", duration_seconds=0.5)

    assert _digest(_first_frame(first)) == _digest(_first_frame(second))
    assert _digest(_first_frame(first)) != _digest(_first_frame(other))


def test_huge_prompt_still_renders(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "clip.mp4"
    render_video(out, prompt="word " * 20_000 + "x" * 50_000, duration_seconds=0.25)
    assert probe_video(out).width == 640


def test_frame_count_follows_fps(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "clip.mp4"
    render_video(out, prompt="fast", duration_seconds=1.0, fps=30)

    assert len(_decode_frames(out)) == 30
    assert probe_video(out).duration_seconds == pytest.approx(1.0, abs=1 / 30)


def _audio_track(path: pathlib.Path) -> tuple[str, float, float] | None:
    """The audio stream's codec, length in seconds and peak sample, or None without one."""
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        assert stream.duration is not None and stream.time_base is not None
        peak = max(float(np.abs(frame.to_ndarray()).max()) for frame in container.decode(stream))
        return stream.codec_context.name, float(stream.duration * stream.time_base), peak


def test_audio_is_a_quiet_aac_track_as_long_as_the_video(tmp_path: pathlib.Path) -> None:
    out, silent = tmp_path / "clip.mp4", tmp_path / "silent.mp4"
    render_video(out, prompt="A choir", duration_seconds=2.3, audio=True)
    render_video(silent, prompt="A choir", duration_seconds=2.3)

    video_seconds = probe_video(out).duration_seconds
    assert video_seconds == pytest.approx(2.3, abs=1 / 24)
    track = _audio_track(out)
    assert track is not None
    codec, seconds, peak = track
    assert codec == "aac"
    assert seconds == pytest.approx(video_seconds, abs=0.05)
    assert 0.005 < peak < 0.1, "audible, but quiet"
    assert _audio_track(silent) is None
    assert _digest(_first_frame(out)) == _digest(_first_frame(silent)), "the same picture"


@pytest.mark.parametrize(
    ("model_id", "generate_audio", "has_audio"),
    [
        (KLING_T2V, None, True),  # Kling's default is true
        (KLING_T2V, True, True),
        (KLING_T2V, False, False),
        ("fal-ai/minimax-video/video-01-live", None, False),  # takes no generate_audio
    ],
)
def test_the_simulator_adds_a_soundtrack_when_the_input_asks_for_one(
    tmp_path: pathlib.Path, model_id: str, generate_audio: bool | None, has_audio: bool
) -> None:
    model = next(model for model in all_models() if model.id == model_id)
    raw: dict[str, object] = {"prompt": "A drummer [sim latency=0]"}
    if model_id == KLING_T2V:
        raw["duration"] = "3"
    if generate_audio is not None:
        raw["generate_audio"] = generate_audio
    simulator = SimulatorProvider(tmp_path)
    result = simulator.result(model, simulator.submit(model, normalize_input(model, raw)))
    path = pathlib.Path(result.video_url.removeprefix("file://"))

    video_seconds = probe_video(path).duration_seconds
    assert video_seconds == pytest.approx(model.output_seconds(normalize_input(model, raw)))
    track = _audio_track(path)
    assert (track is not None) is has_audio
    if track is not None:
        assert track[1] == pytest.approx(video_seconds, abs=0.05)


@pytest.mark.parametrize(
    ("aspect_ratio", "duration", "message"),
    [
        ("4:3", 1.0, "aspect ratio"),
        ("16:9", 0.0, "duration"),
        ("16:9", -1.0, "duration"),
        ("16:9", float("nan"), "duration"),
    ],
)
def test_render_rejects_bad_arguments(
    tmp_path: pathlib.Path, aspect_ratio: str, duration: float, message: str
) -> None:
    out = tmp_path / "clip.mp4"
    with pytest.raises(ValueError, match=message):
        render_video(out, prompt="x", duration_seconds=duration, aspect_ratio=aspect_ratio)
    assert not out.exists()


def test_concurrent_renders_of_one_path_leave_a_whole_file(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "clip.mp4"
    errors: list[BaseException] = []

    def render(prompt: str) -> None:
        try:
            render_video(out, prompt=prompt, duration_seconds=1.0)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=render, args=(f"prompt {i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(_decode_frames(out)) == 24
    assert list(tmp_path.iterdir()) == [out]


@pytest.mark.parametrize(
    "content", [b"", b"definitely not a video" * 100, _png_bytes((1, 2, 3))], ids=repr
)
def test_probe_rejects_files_that_are_not_video(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "upload.mp4"
    path.write_bytes(content)
    with pytest.raises(InvalidVideo, match=r"upload\.mp4"):
        probe_video(path)


def test_probe_rejects_random_bytes(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "random.mp4"
    path.write_bytes(np.random.default_rng(7).bytes(64 * 1024))
    with pytest.raises(InvalidVideo):
        probe_video(path)


@pytest.mark.parametrize(
    ("aspect_ratio", "max_width", "expected"),
    [("16:9", 640, (640, 360)), ("16:9", 320, (320, 180)), ("9:16", 640, (360, 640))],
)
def test_write_poster_saves_a_jpeg_with_the_video_aspect(
    tmp_path: pathlib.Path, aspect_ratio: str, max_width: int, expected: tuple[int, int]
) -> None:
    video = tmp_path / "clip.mp4"
    poster = tmp_path / "posters" / "clip.jpg"
    render_video(video, prompt="poster", duration_seconds=1.0, aspect_ratio=aspect_ratio)

    write_poster(video, poster, max_width=max_width)

    with Image.open(poster) as image:
        assert image.format == "JPEG"
        assert image.size == expected
    assert list(poster.parent.iterdir()) == [poster]


def test_write_poster_rejects_garbage(tmp_path: pathlib.Path) -> None:
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 1000)
    with pytest.raises(InvalidVideo):
        write_poster(video, tmp_path / "clip.jpg")
    assert not (tmp_path / "clip.jpg").exists()


# --- image-to-video -------------------------------------------------------------------------


def _assert_red_dominant(frame: np.ndarray) -> None:
    red, green, blue = frame.reshape(-1, 3).mean(axis=0)
    assert red > 150
    assert red > 2 * green
    assert red > 2 * blue


def test_image_to_video_from_data_url(tmp_path: pathlib.Path) -> None:
    url = _data_url(_png_bytes((220, 20, 20)))
    out = tmp_path / "clip.mp4"

    render_video(
        out, prompt="", duration_seconds=1.0, image=load_image(url, allow_address=is_public)
    )

    _assert_red_dominant(_first_frame(out))


def test_image_to_video_zooms_and_captions(tmp_path: pathlib.Path) -> None:
    # Red with a white frame around it: zooming in pushes the frame out of view.
    image = Image.new("RGB", (400, 300), (255, 255, 255))
    image.paste((220, 20, 20), (40, 40, 360, 260))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    out = tmp_path / "clip.mp4"

    render_video(
        out,
        prompt="a caption",
        duration_seconds=1.0,
        aspect_ratio="1:1",
        image=load_image(_data_url(buffer.getvalue()), allow_address=is_public),
    )

    frames = _decode_frames(out)
    assert frames[0].shape == (480, 480, 3)
    _assert_red_dominant(frames[0][: 480 // 2])
    assert frames[-1][:240].mean() < frames[0][:240].mean(), "the white border zooms out of view"


def test_load_image_returns_loaded_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 255, 128)).save(buffer, format="PNG")
    image = load_image(_data_url(buffer.getvalue()), allow_address=is_public)

    assert image.mode == "RGB"
    assert image.size == (10, 10)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.png", "scheme"),
        ("no-scheme.png", "scheme"),
        ("data:image/png;base64,@@@", "base64"),
        ("data:text/plain,hello", "not point to a supported image"),
        ("file:///etc/hostname", "scheme"),  # never the worker's own files
    ],
)
def test_load_image_rejects_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ImageFetchError, match=message):
        load_image(url, allow_address=is_public)


def test_load_image_enforces_max_bytes_for_data_urls() -> None:
    png = _png_bytes((0, 0, 0), size=(300, 300))
    url = _data_url(png)

    with pytest.raises(ImageFetchError, match="larger"):
        load_image(url, allow_address=is_public, max_bytes=len(png) - 1)
    assert load_image(url, allow_address=is_public, max_bytes=len(png)).size == (300, 300)


# --- http(s) --------------------------------------------------------------------------------

_PNG = _png_bytes((20, 200, 20))
_BIG_BODY = b"x" * 5000


class _Handler(http.server.BaseHTTPRequestHandler):
    release = threading.Event()

    def do_GET(self) -> None:
        if self.path == "/image.png":
            self._reply(200, _PNG, content_type="image/png")
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/image.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/text":
            self._reply(200, b"<html>not an image</html>", content_type="text/html")
        elif self.path == "/big":
            self._reply(200, _BIG_BODY)
        elif self.path == "/big-undeclared":
            # HTTP/1.0 without Content-Length: the body runs until the connection closes.
            self.send_response(200)
            self.end_headers()
            self.wfile.write(_BIG_BODY)
        elif self.path == "/hang":
            self.release.wait(timeout=30)
        else:
            self._reply(404, b"missing")

    def _reply(
        self, status: int, body: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Keep test output quiet."""


@pytest.fixture
def http_base() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    # A short poll interval keeps shutdown() from adding half a second to every test.
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        _Handler.release.set()
        server.shutdown()
        server.server_close()
        thread.join()
        _Handler.release.clear()


def test_load_image_over_http(http_base: str) -> None:
    image = load_image(f"{http_base}/image.png", allow_address=ANY_ADDRESS)
    assert image.size == (200, 120)
    assert image.getpixel((0, 0)) == (20, 200, 20)


def test_load_image_follows_redirects(http_base: str) -> None:
    assert load_image(f"{http_base}/redirect", allow_address=ANY_ADDRESS).size == (200, 120)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing", "HTTP 404"),
        ("/text", "not point to a supported image"),
        ("/big", "larger"),
        ("/big-undeclared", "larger"),
    ],
)
def test_load_image_http_failures(http_base: str, path: str, message: str) -> None:
    with pytest.raises(ImageFetchError, match=message):
        load_image(f"{http_base}{path}", allow_address=ANY_ADDRESS, max_bytes=1000)


def test_load_image_http_timeout(http_base: str) -> None:
    with pytest.raises(ImageFetchError, match="timed out"):
        load_image(f"{http_base}/hang", allow_address=ANY_ADDRESS, timeout=0.2)


def test_load_image_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port any more, so the connection is refused: the server is down.
    with pytest.raises(ImageFetchError) as failed:
        load_image(f"http://127.0.0.1:{port}/image.png", allow_address=ANY_ADDRESS, timeout=2.0)
    assert str(failed.value) == "could not fetch image URL: the connection was refused"
