"""The job's wire shapes: one pydantic model each, which validates the request, renders the
response and documents both (the OpenAPI document is built from these classes).

The generate request's `input` is each catalog model's own JSON Schema, embedded as it is:
the catalog validates it, and the document shows one closed branch per model.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from shared.jobs.status import PublicStatus
from shared.ledger.credits import to_credits
from shared.webhooks.schemas import EventType
from shared.wire import Closed, Open, QueryInt

if TYPE_CHECKING:  # the row is read, not imported: clients use these shapes too
    from shared.jobs.admission import Place
    from shared.jobs.models import Job as JobRow

Metadata = dict[str, Any]
# Metadata is copied into every event, webhook delivery and list page of its job: bounded.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 40
MAX_METADATA_BYTES = 16 * 1024
METADATA = (
    f"Free-form, returned as given: at most {MAX_METADATA_KEYS} keys of at most "
    f"{MAX_METADATA_KEY} characters, {MAX_METADATA_BYTES // 1024} KiB as compact JSON."
)


def _within_size(metadata: Metadata) -> Metadata:
    """`metadata` if its compact JSON (UTF-8) is at most MAX_METADATA_BYTES, else ValueError."""
    text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if len(text.encode("utf-8", "surrogatepass")) > MAX_METADATA_BYTES:
        raise ValueError(f"must be at most {MAX_METADATA_BYTES // 1024} KiB as compact JSON")
    return metadata


MetadataIn = Annotated[
    dict[Annotated[str, StringConstraints(max_length=MAX_METADATA_KEY)], Any],
    Field(max_length=MAX_METADATA_KEYS, description=METADATA),
    AfterValidator(_within_size),
]
"""Metadata as a request takes it (answers show what was stored, as `Metadata`)."""
METADATA_SCHEMA: JsonSchemaValue = TypeAdapter(MetadataIn).json_schema()
ThrottledBy = Literal["provider", "account"]
WEBHOOK_URL = (
    "Where this job's events are POSTed, signed as Standard Webhooks specifies with the "
    "`webhook_secret` of the answer (the account's subscriptions receive them too)."
)
WEBHOOK_EVENTS = "The event types sent to `webhook_url` (only with it); every type if absent."
QUOTE_ID = (
    "A binding quote of this model and input (POST /v1/video/quotes): the job holds and "
    "charges its credits. 409 `quote_expired` or `quote_mismatch` otherwise."
)
MAX_IDEMPOTENCY_KEY = 200
# Visible ASCII, no space: a header value is ASCII on the wire, and HTTP trims its edges.
IDEMPOTENCY_KEY_PATTERN = "^[!-~]+$"
IDEMPOTENCY_KEY_RULE = f"must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters (no spaces)"
IDEMPOTENCY_KEY_SCHEMA: JsonSchemaValue = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_IDEMPOTENCY_KEY,
    "pattern": IDEMPOTENCY_KEY_PATTERN,
}


def valid_idempotency_key(key: str) -> bool:
    """Whether `key` may be an `Idempotency-Key` (the API, the CLI and the MCP tools ask)."""
    return (
        len(key) <= MAX_IDEMPOTENCY_KEY and re.fullmatch(IDEMPOTENCY_KEY_PATTERN, key) is not None
    )


JOB_TYPE = "video_generation"


class JobCreate(Closed):
    """`POST /v1/video/generate`: a model id (there is no default) and its input."""

    model_config = ConfigDict(title="GenerateRequest")

    model: str = Field(description="A model id from GET /v1/video/models.")
    input: dict[str, Any] = Field(description="The model's parameters.")
    metadata: MetadataIn = Field(default_factory=dict)
    webhook_url: str | None = Field(default=None, max_length=2000, description=WEBHOOK_URL)
    webhook_events: list[EventType] | None = Field(
        default=None, min_length=1, max_length=6, description=WEBHOOK_EVENTS
    )
    quote_id: uuid.UUID | None = Field(default=None, description=QUOTE_ID)

    @field_validator("webhook_events")
    @classmethod
    def _events_need_a_url(
        cls, events: list[EventType] | None, info: ValidationInfo
    ) -> list[EventType] | None:
        """Events without a URL would be ignored: refused instead (a bad URL is named alone)."""
        if events is not None and "webhook_url" in info.data and info.data["webhook_url"] is None:
            raise ValueError("needs webhook_url")
        return events

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: Callable[[Any], JsonSchemaValue]
    ) -> JsonSchemaValue:
        """One closed branch per catalog model, its input schema embedded as it is."""
        from shared.catalog import all_models  # only when the document is built

        return {
            "title": "GenerateRequest",
            "description": "`model` picks the branch; an unknown model answers 404 invalid_model.",
            "oneOf": [
                {
                    "title": model.name,
                    "type": "object",
                    "properties": {
                        "model": {"type": "string", "const": model.id},
                        "input": {
                            **model.input_schema,
                            "description": f"Parameters of {model.id}.",
                        },
                        "metadata": METADATA_SCHEMA,
                        "webhook_url": {
                            "type": "string",
                            "maxLength": 2000,
                            "description": WEBHOOK_URL,
                        },
                        "webhook_events": {
                            "type": "array",
                            "items": {"type": "string", "enum": list(get_args(EventType))},
                            "minItems": 1,
                            "maxItems": 6,
                            "description": WEBHOOK_EVENTS,
                        },
                        "quote_id": {"type": "string", "format": "uuid", "description": QUOTE_ID},
                    },
                    "required": ["model", "input"],
                    "dependentRequired": {"webhook_events": ["webhook_url"]},
                    "additionalProperties": False,
                }
                for model in all_models()
            ],
        }


ESTIMATED_SECONDS = (
    "Seconds the render is expected to take: the median of the model's latest 20 renders "
    "once there are three, else the catalog's estimate; refined by the provider's word once "
    "the job is submitted."
)


class JobAccepted(Open):
    """202 to a submit: the job is queued; poll it."""

    job_id: uuid.UUID
    status: PublicStatus
    type: str
    model: str
    estimated_seconds: int = Field(description=ESTIMATED_SECONDS)
    estimated_credits: float = Field(description="Credits, to two decimals.")
    hint: str
    webhook_secret: str | None = Field(
        default=None,
        description="With `webhook_url`: the secret (`whsec_` and base64) that signs this "
        "job's deliveries there; null otherwise. A replay by Idempotency-Key shows it again.",
    )

    @classmethod
    def of(cls, job: JobRow, webhook_secret: str | None = None) -> JobAccepted:
        return cls(
            webhook_secret=webhook_secret,
            job_id=job.id,
            status=job.status.public,
            type=job.type,
            model=job.model,
            estimated_seconds=job.estimated_seconds,
            estimated_credits=to_credits(job.estimated_credits),
            hint=(
                f"Poll GET /v1/jobs/{job.id} or GET /v1/video/{job.id}. "
                "Credits charged on completion only."
            ),
        )


class VideoFile(Open):
    url: str = Field(description="Our signed copy; the provider's if not ingested.")
    content_type: str
    file_size: int | None
    provider_url: str | None = Field(default=None, description="The provider's URL, once ingested.")


class JobResult(Open):
    video: VideoFile
    media_asset_id: uuid.UUID | None = None


class JobError(Open):
    code: str
    message: str


def with_our_video(result: dict[str, Any], video_url: str | None) -> dict[str, Any]:
    """A job's `result` as the API shows it: once ingested (`video_url`, our copy's URL),
    `video.url` is ours and `video.provider_url` the provider's."""
    video = dict(result.get("video") or {})
    if video_url is not None:
        video["provider_url"] = video.get("url")
        video["url"] = video_url
    return {**result, "video": video}


class Billing(Open):
    """What the job is charged and what the provider billed us for it."""

    estimated_credits: float = Field(description="Credits held at submit, to two decimals.")
    charged_credits: float | None = Field(
        description="Credits charged (the capture; 0 once refunded), to two decimals; null "
        "until charged, and for a job that failed or was cancelled before."
    )
    provider_units: float | None = Field(
        description="The units the provider billed, in the unit of the model's price (fal's "
        "`x-fal-billable-units`: seconds of output, or videos); null if it reported none."
    )
    provider_cost_usd: float | None = Field(
        description="`provider_units` × the model's unit price (the provider's latest "
        "published price, else the built-in catalog's), in USD; null without units."
    )

    @classmethod
    def of(cls, job: JobRow) -> Billing:
        return cls(
            estimated_credits=to_credits(job.estimated_credits),
            charged_credits=None if job.credits_used is None else to_credits(job.credits_used),
            provider_units=job.provider_units,
            provider_cost_usd=job.provider_cost_usd,
        )


class Job(Open):
    """`GET /v1/jobs/{id}`: the job as the database has it (the provider is never called)."""

    id: uuid.UUID
    type: str = Field(examples=[JOB_TYPE])
    status: PublicStatus
    progress: int = Field(ge=0, le=100)
    queue_position: int | None = Field(
        description="The provider's queue position; while the job waits in our fair queue "
        "(`throttled_by` set), its place there (1: next)."
    )
    throttled_by: ThrottledBy | None = Field(
        default=None,
        description="While queued for a slot: `provider` (the provider's or the model's "
        "capacity is in use) or `account` (the account's own concurrency cap is reached).",
    )
    model: str
    input: dict[str, Any] = Field(description="The input, defaults filled in.")
    result: JobResult | None
    error: JobError | None
    credits_used: float | None = Field(description="Credits charged, once settled.")
    estimated_credits: float = Field(description="Credits, to two decimals.")
    estimated_seconds: int = Field(description=ESTIMATED_SECONDS)
    provider_request_id: str | None
    cancel_requested_at: datetime | None
    logs: list[dict[str, Any]]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    metadata: Metadata
    batch_id: uuid.UUID | None = Field(default=None, description="The batch it is an item of.")
    quote_id: uuid.UUID | None = Field(default=None, description="The quote that priced it.")
    billing: Billing | None = None  # absent from events recorded before it existed

    @classmethod
    def of(cls, job: JobRow, video_url: str | None, place: Place | None = None) -> Job:
        """The job's view; `video_url` is the URL of our copy of its video, once ingested;
        `place`, where it stands in the fair queue while it waits for a slot."""
        result = None
        if job.result is not None:
            result = JobResult.model_validate(with_our_video(job.result, video_url))
        return cls(
            id=job.id,
            type=job.type,
            status=job.status.public,
            progress=job.progress,
            queue_position=job.queue_position if place is None else place.position,
            throttled_by=None if place is None else place.throttled_by.value,
            model=job.model,
            input=job.input,
            result=result,
            error=JobError.model_validate(job.error) if job.error else None,
            credits_used=None if job.credits_used is None else to_credits(job.credits_used),
            estimated_credits=to_credits(job.estimated_credits),
            estimated_seconds=job.estimated_seconds,
            provider_request_id=job.provider_request_id,
            cancel_requested_at=job.cancel_requested_at,
            logs=job.provider_logs,
            created_at=job.created_at,
            started_at=job.started_at,
            completed_at=job.completed_at,
            metadata=job.job_metadata,
            batch_id=job.batch_id,
            quote_id=job.quote_id,
            billing=Billing.of(job),
        )


class JobPage(Open):
    """`GET /v1/jobs`: newest first; follow `next_cursor` for the next page."""

    model_config = ConfigDict(title="JobList")

    data: list[Job]
    next_cursor: str | None
    has_more: bool


class JobListQuery(BaseModel):
    status: PublicStatus | None = Field(default=None, description="Only jobs in this status.")
    type: Literal["video_generation"] | None = Field(
        default=None, description="Only jobs of this type."
    )
    limit: QueryInt = Field(default=20, ge=1, le=100, description="Page size.")
    cursor: str | None = Field(default=None, description="`next_cursor` of the previous page.")
