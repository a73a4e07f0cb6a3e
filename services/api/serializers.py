"""JSON views of jobs and media assets, as the API documents them."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from itsdangerous import TimestampSigner, URLSafeTimedSerializer

from shared import ledger
from shared.jobs import PUBLIC_STATUS
from shared.models import Job, MediaAsset

MEDIA_URL_SALT = "media-content"
URL_TIME_STEP = 3600


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _credits(units: int | None) -> float | None:
    return None if units is None else ledger.to_credits(units)


class _HourSigner(TimestampSigner):
    """Signs with the time rounded down to the hour, so an asset's URL stays the same for an
    hour: repeated reads of a job agree, and browsers and CDNs can cache the video."""

    def get_timestamp(self) -> int:
        return int(time.time()) // URL_TIME_STEP * URL_TIME_STEP


def media_signer(secret_key: str) -> URLSafeTimedSerializer:
    """Signs media content URLs, so a browser's <video src> can play without a header."""
    return URLSafeTimedSerializer(secret_key, salt=MEDIA_URL_SALT, signer=_HourSigner)


def content_url(asset_id: str, base_url: str, secret_key: str) -> str:
    token = media_signer(secret_key).dumps(asset_id)
    return f"{base_url}/v1/media/{asset_id}/content?token={token}"


def job_to_dict(job: Job, base_url: str, secret_key: str) -> dict[str, Any]:
    result = None
    if job.result is not None:
        result = {key: value for key, value in job.result.items()}
        video = dict(result.get("video") or {})
        asset_id = result.get("media_asset_id")
        if asset_id:
            video["provider_url"] = video.get("url")
            video["url"] = content_url(asset_id, base_url, secret_key)
        result["video"] = video
    error = job.error
    if error is None and job.ingest_error:
        error = {"code": "ingest_failed", "message": job.ingest_error}
    return {
        "id": str(job.id),
        "type": job.type,
        "status": PUBLIC_STATUS[job.status],
        "progress": job.progress,
        "queue_position": job.queue_position,
        "model": job.model,
        "input": job.input,
        "result": result,
        "error": error,
        "credits_used": _credits(job.credits_used),
        "estimated_credits": _credits(job.estimated_credits),
        "estimated_seconds": job.estimated_seconds,
        "provider_request_id": job.provider_request_id,
        "cancel_requested_at": _iso(job.cancel_requested_at),
        "logs": job.provider_logs,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "completed_at": _iso(job.completed_at),
        "metadata": job.job_metadata,
    }


def asset_to_dict(asset: MediaAsset, base_url: str, secret_key: str) -> dict[str, Any]:
    asset_id = str(asset.id)
    return {
        "id": asset_id,
        "url": content_url(asset_id, base_url, secret_key),
        "poster_url": f"{base_url}/v1/media/{asset_id}/poster",
        "filename": asset.filename,
        "content_type": asset.content_type,
        "size_bytes": asset.size_bytes,
        "duration_seconds": asset.duration_seconds,
        "width": asset.width,
        "height": asset.height,
        "source_type": asset.source_type,
        "source_job_id": str(asset.source_job_id) if asset.source_job_id else None,
        "title": asset.title,
        "tags": asset.tags,
        "created_at": _iso(asset.created_at),
    }
