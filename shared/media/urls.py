"""The media-URL rule: where a client fetches an asset's video and poster.

- Local storage: our own routes, `/v1/media/{id}/content?token=…` and `/v1/media/{id}/poster
  ?token=…`, signed with `SECRET_KEY` so a browser's `<video src>` plays without a header.
- S3 storage: a presigned GET of the object, fetched from the bucket directly (it answers
  Range requests itself).

Both kinds of URL are signed as of the start of the hour, so repeated reads of a job agree
within the hour and browsers and CDNs can cache the video; both stay valid for about a week.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, TimestampSigner, URLSafeTimedSerializer

from shared.jobs.models import Job
from shared.media import ingest, library
from shared.media.models import MediaAsset
from shared.media.storage import MAX_PRESIGN_SECONDS, MediaStorage

MEDIA_URL_SALT = "media-content"
URL_TIME_STEP = 3600
# The token of our signed route lives as long as a presigned S3 URL can (seven days).
SIGNED_URL_MAX_AGE = MAX_PRESIGN_SECONDS


class _HourSigner(TimestampSigner):
    """Signs with the time rounded down to the hour, so an asset's URL stays the same for an
    hour: repeated reads of a job agree, and browsers and CDNs can cache the video."""

    def get_timestamp(self) -> int:
        return int(time.time()) // URL_TIME_STEP * URL_TIME_STEP


def media_signer(secret_key: str) -> URLSafeTimedSerializer:
    """Signs media content URLs, so a browser's <video src> can play without a header."""
    return URLSafeTimedSerializer(secret_key, salt=MEDIA_URL_SALT, signer=_HourSigner)


def content_url(asset_id: str, base_url: str, secret_key: str) -> str:
    """Our signed route to an asset's video (the local-storage URL)."""
    token = media_signer(secret_key).dumps(asset_id)
    return f"{base_url}/v1/media/{asset_id}/content?token={token}"


def poster_url(asset_id: str, base_url: str, secret_key: str) -> str:
    """Our signed route to an asset's poster; the same token as its video."""
    token = media_signer(secret_key).dumps(asset_id)
    return f"{base_url}/v1/media/{asset_id}/poster?token={token}"


def token_grants(token: str, asset_id: str, secret_key: str) -> bool:
    """Whether `token` is a live signature of this asset's id."""
    try:
        signed_id = media_signer(secret_key).loads(token, max_age=SIGNED_URL_MAX_AGE)
    except BadSignature:
        return False
    return bool(signed_id == asset_id)


def presigned_url(
    storage: MediaStorage, key: str, *, filename: str | None, content_type: str
) -> str | None:
    """The storage's own URL for an object, or None when the storage signs none (local)."""
    return storage.presigned_url(
        key, filename=filename, content_type=content_type, expires=SIGNED_URL_MAX_AGE
    )


@dataclass(frozen=True)
class MediaUrls:
    content: str
    poster: str | None


def media_urls(
    *,
    storage: MediaStorage,
    asset_id: str,
    storage_key: str,
    poster_key: str | None,
    filename: str,
    content_type: str,
    base_url: str,
    secret_key: str,
) -> MediaUrls:
    """An asset's video and poster URLs: presigned by the storage, else our signed routes."""
    content = presigned_url(
        storage, storage_key, filename=filename, content_type=content_type
    ) or content_url(asset_id, base_url, secret_key)
    poster = None
    if poster_key:
        poster = presigned_url(
            storage, poster_key, filename=None, content_type=ingest.POSTER_CONTENT_TYPE
        ) or poster_url(asset_id, base_url, secret_key)
    return MediaUrls(content, poster)


def asset_urls(
    asset: MediaAsset, *, storage: MediaStorage, base_url: str, secret_key: str
) -> MediaUrls:
    """The URLs of a library asset."""
    return media_urls(
        storage=storage,
        asset_id=str(asset.id),
        storage_key=asset.storage_key,
        poster_key=asset.poster_key,
        filename=asset.filename,
        content_type=asset.content_type,
        base_url=base_url,
        secret_key=secret_key,
    )


def job_video_urls(
    job: Job,
    *,
    storage: MediaStorage,
    base_url: str,
    secret_key: str,
    result: Mapping[str, Any] | None = None,
) -> MediaUrls | None:
    """The URLs of a job's ingested video (`result.video.url`), None before ingest; with
    `result`, of the job as that result shows it (one of its events' views).

    Derived from the job alone (ingest's key rule, the library's file name), so rendering a
    page of jobs reads no asset rows."""
    result = (job.result if result is None else result) or {}
    asset_id = result.get("media_asset_id")
    if not asset_id:
        return None
    video = result.get("video") or {}
    return media_urls(
        storage=storage,
        asset_id=str(asset_id),
        storage_key=ingest.video_key(job.account_id, job.id),
        poster_key=ingest.poster_key(job.account_id, job.id),
        filename=library.generated_filename(job),
        content_type=str(video.get("content_type") or "video/mp4"),
        base_url=base_url,
        secret_key=secret_key,
    )
