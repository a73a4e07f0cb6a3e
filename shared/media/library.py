"""The account's media library: assets recorded from ingested jobs, listed and searched."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from shared import accounts
from shared.db import Prepared, utcnow
from shared.errors import InvalidInput
from shared.jobs.models import Job
from shared.media.ingest import IngestedVideo
from shared.media.models import MediaAsset
from shared.media.schemas import SOURCE_TYPES


def generated_filename(job: Job) -> str:
    """The file name of a job's video: a slug of its prompt and the job id's start."""
    return _filename(str(job.input.get("prompt") or ""), job.id)


def _filename(prompt: str, job_id: uuid.UUID) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:48].rstrip("-")
    return f"{slug or 'video'}-{str(job_id)[:8]}.mp4"


# A job's asset, inserted unless one exists for the job: compiled once per dialect and run
# on the driver's connection (every ingest writes one). The row's keys are its columns.
_INSERT_ONCE = {
    name: Prepared(
        dialect.insert(MediaAsset)
        .on_conflict_do_nothing(index_elements=[MediaAsset.source_job_id])
        .returning(MediaAsset.id)
    )
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def record_generated_video(*, session: Session, job: Job, video: IngestedVideo) -> uuid.UUID:
    """The id of the job's asset, created once: one insert that does nothing if a parallel
    or earlier ingest of the job made it (the unique source job), then a read in that case
    alone."""
    prompt = str(job.input.get("prompt") or "")
    connection = session.connection()
    created = _INSERT_ONCE[connection.dialect.name].rows(
        connection,
        {
            "id": uuid.uuid4(),
            "account_id": job.account_id,
            "storage_key": video.storage_key,
            "poster_key": video.poster_key,
            "filename": generated_filename(job),
            "content_type": video.info.content_type,
            "size_bytes": video.size_bytes,
            "duration_seconds": video.info.duration_seconds,
            "width": video.info.width,
            "height": video.info.height,
            "source_type": "video_generation",
            "source_job_id": job.id,
            "source_url": (job.provider_result or {}).get("video", {}).get("url"),
            "title": prompt[:300] or None,
            "tags": [job.model],
            "created_at": utcnow(),
        },
    )
    if created:
        return created[0][0]
    return session.scalars(select(MediaAsset.id).where(MediaAsset.source_job_id == job.id)).one()


def get_asset(*, session: Session, account_id: uuid.UUID, asset_id: str) -> MediaAsset:
    return accounts.get_owned(
        session=session,
        model=MediaAsset,
        account_id=account_id,
        raw_id=asset_id,
        noun="media asset",
    )


def list_assets(
    *,
    session: Session,
    account_id: uuid.UUID,
    source_type: str | None,
    search: str | None,
    limit: int,
    offset: int,
) -> tuple[list[MediaAsset], int]:
    """A page of the account's assets, newest first, and the total that match."""
    query = select(MediaAsset).where(MediaAsset.account_id == account_id)
    if source_type is not None:
        if source_type not in SOURCE_TYPES:
            raise InvalidInput(
                "Unknown source_type.",
                fields={"source_type": "must be one of " + ", ".join(SOURCE_TYPES)},
            )
        query = query.where(MediaAsset.source_type == source_type)
    if search:
        escaped = search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(
            or_(
                func.lower(MediaAsset.title).like(pattern, escape="\\"),
                func.lower(MediaAsset.filename).like(pattern, escape="\\"),
            )
        )
    total = session.scalar(select(func.count()).select_from(query.subquery()))
    assets = session.scalars(
        query.order_by(MediaAsset.created_at.desc(), MediaAsset.id).limit(limit).offset(offset)
    )
    return list(assets), total or 0
