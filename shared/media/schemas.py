"""The media library's wire shapes: an asset, a page of them, and the list's query."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from shared.media.library import SOURCE_TYPES
from shared.media.models import MediaAsset as AssetRow
from shared.wire import QueryInt

SOURCE_TYPE = Field(json_schema_extra={"enum": list(SOURCE_TYPES)})


class MediaAsset(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class MediaPage(BaseModel):
    model_config = ConfigDict(extra="forbid", title="MediaList")

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
