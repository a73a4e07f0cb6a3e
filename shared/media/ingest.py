"""Copy a provider's output into media storage and read its facts (size, duration, frame).

Provider result URLs expire within about an hour, so this runs as soon as a job is
settled. Keys are derived from the job, so a duplicate ingest rewrites the same objects
with the same bytes instead of making a second copy. Storage is the folder or the bucket
that `MEDIA_STORAGE` names (shared/media/storage.py); the code here is the same for both.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from shared.media.probe import InvalidVideo, VideoInfo, probe_video, write_poster
from shared.media.storage import MediaStorage

MAX_VIDEO_BYTES = 2 * 1024**3
# No delivery codec needs more than 200 Mbit/s: a file denser than this for its duration is
# not the video it claims to be (or not a video at all), so it is not stored.
MAX_BYTES_PER_SECOND = 25 * 1024**2
DOWNLOAD_TIMEOUT = httpx.Timeout(30.0, read=120.0)
POSTER_CONTENT_TYPE = "image/jpeg"


class IngestError(Exception):
    """The output could not be fetched or is not a video; worth retrying a few times."""


@dataclass(frozen=True)
class IngestedVideo:
    storage_key: str
    poster_key: str
    size_bytes: int
    info: VideoInfo


def video_key(account_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """Where a generated job's video is stored."""
    return f"videos/{account_id}/{job_id}.mp4"


def poster_key(account_id: uuid.UUID, job_id: uuid.UUID) -> str:
    """Where a generated job's poster frame is stored."""
    return f"posters/{account_id}/{job_id}.jpg"


def _download(url: str, destination: Path, local_root: Path) -> None:
    parsed = urlparse(url)
    if parsed.scheme == "file":
        # Only the simulator hands out file URLs, and only inside its own folder.
        source = Path(unquote(parsed.path)).resolve()
        if not source.is_relative_to(local_root.resolve()):
            raise IngestError(f"refusing to read a local file outside {local_root}")
        try:
            destination.write_bytes(source.read_bytes())
        except OSError as exc:
            raise IngestError(f"could not read {source}: {exc}") from exc
        return
    if parsed.scheme not in ("http", "https"):
        raise IngestError(f"unsupported result URL scheme {parsed.scheme!r}")
    received = 0
    try:
        with (
            httpx.stream("GET", url, timeout=DOWNLOAD_TIMEOUT, follow_redirects=True) as response,
            destination.open("wb") as out,
        ):
            response.raise_for_status()
            for chunk in response.iter_bytes(1 << 20):
                received += len(chunk)
                if received > MAX_VIDEO_BYTES:
                    raise IngestError("the video is larger than the ingest limit")
                out.write(chunk)
    except httpx.HTTPError as exc:
        raise IngestError(f"download of {url} failed: {exc}") from exc


def ingest_video(
    *,
    storage: MediaStorage,
    url: str,
    account_id: uuid.UUID,
    job_id: uuid.UUID,
    local_root: Path,
) -> IngestedVideo:
    """Download `url`, check it is a video, store it and its poster frame."""
    video = video_key(account_id, job_id)
    poster_at = poster_key(account_id, job_id)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-") as scratch:
            downloaded = Path(scratch) / "video"
            _download(url, downloaded, local_root)
            size = downloaded.stat().st_size
            try:
                info = probe_video(downloaded)
                poster = Path(scratch) / "poster.jpg"
                write_poster(downloaded, poster)
            except InvalidVideo as exc:
                raise IngestError(f"the provider's output is not a playable video: {exc}") from exc
            _check_plausible(size, info)
            # The poster first: once the video exists the asset is complete on every backend.
            storage.put(poster_at, poster, POSTER_CONTENT_TYPE)
            storage.put(video, downloaded, info.content_type)
    except OSError as exc:
        # A full or read-only disk (ours or the storage's): worth retrying, with backoff.
        raise IngestError(f"could not write the video: {exc.strerror or exc}") from exc
    return IngestedVideo(video, poster_at, size, info)


def _check_plausible(size: int, info: VideoInfo) -> None:
    if info.duration_seconds <= 0:
        raise IngestError("the provider's output has no duration")
    if size > MAX_BYTES_PER_SECOND * max(info.duration_seconds, 1.0):
        raise IngestError(
            f"the provider's output is implausibly large for its length "
            f"({size} bytes for {info.duration_seconds:.1f} s)"
        )
