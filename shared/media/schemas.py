"""The media library's wire shapes: an asset, a page of them, and the list's query."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from shared.wire import Open, QueryInt

if TYPE_CHECKING:  # the row is read, not imported: clients use these shapes too
    from shared.media.models import MediaAsset as AssetRow

SOURCE_TYPES = ("video_generation", "upload")
SOURCE_TYPE = Field(json_schema_extra={"enum": list(SOURCE_TYPES)})


class MediaAsset(Open):
    id: uuid.UUID
    url: str = Field(description="Signed content URL, valid 7 days.")
    poster_url: str | None = Field(description="Signed URL of the poster frame, valid 7 days.")
    filename: str
    content_type: str
    size_bytes: int
    duration_seconds: float | None
    width: int | None
    height: int | None
    source_type: str = SOURCE_TYPE
    source_job_id: uuid.UUID | None
    title: str | None
    tags: list[str]
    created_at: datetime

    @classmethod
    def of(cls, asset: AssetRow, *, url: str, poster_url: str | None) -> MediaAsset:
        return cls(
            id=asset.id,
            url=url,
            poster_url=poster_url,
            filename=asset.filename,
            content_type=asset.content_type,
            size_bytes=asset.size_bytes,
            duration_seconds=asset.duration_seconds,
            width=asset.width,
            height=asset.height,
            source_type=asset.source_type,
            source_job_id=asset.source_job_id,
            title=asset.title,
            tags=asset.tags,
            created_at=asset.created_at,
        )


class MediaPage(Open):
    model_config = ConfigDict(title="MediaList")

    data: list[MediaAsset]
    total: int
    limit: int
    offset: int


class MediaQuery(BaseModel):
    source_type: str | None = Field(
        default=None,
        description="Only assets of this source.",
        json_schema_extra={"enum": list(SOURCE_TYPES)},
    )
    search: str | None = Field(default=None, description="In the title or file name.")
    limit: QueryInt = Field(default=20, ge=1, le=100, description="Page size.")
    offset: QueryInt = Field(default=0, ge=0, le=1_000_000, description="Assets to skip.")
