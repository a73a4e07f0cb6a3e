"""The tools' names, descriptions, input schemas (built from the API's model catalog) and
output schemas (built from the API's wire models, `shared/*/schemas.py`).

The descriptions are written for an agent that has read none of our docs: each says what the
tool costs, what to call before and after it, and how to get from a prompt to a video URL.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import mcp_types as types
from pydantic import BaseModel, ConfigDict, Field

from shared.catalog.schemas import Model, PriceQuote
from shared.jobs.schemas import (
    IDEMPOTENCY_KEY_SCHEMA,
    Billing,
    Job,
    JobError,
    JobResult,
    ThrottledBy,
)
from shared.jobs.status import PublicStatus
from shared.media.schemas import MediaPage

GENERATE = "naive_generate_video"
MODELS = "naive_video_models"
STATUS = "naive_video_status"
PRICING = "naive_video_pricing"
MEDIA_LIST = "naive_media_list"
CANCEL = "naive_cancel_video"
TOOL_NAMES = (GENERATE, MODELS, STATUS, PRICING, MEDIA_LIST, CANCEL)

MAX_WAIT_SECONDS = 600

COMPLETED = PublicStatus.COMPLETED.value
FAILED = PublicStatus.FAILED.value
CANCELLED = PublicStatus.CANCELLED.value
STATUSES = ", ".join(status.value for status in PublicStatus)
FINAL_STATUSES = ", ".join(status.value for status in PublicStatus if status.is_final)

INSTRUCTIONS = f"""\
Naive Video generates videos with AI models, asynchronously, for credits.
Workflow: {MODELS} (pick a model; there is no default) → {PRICING} (preview the cost) →
{GENERATE} (submit; returns a job_id at once, or waits up to wait_seconds) →
{STATUS} every 15-30 s until status is "{COMPLETED}" (video_url is then set) or "{FAILED}".
Credits are held at submission and charged only when a job completes; a {FAILED} or {CANCELLED}
job costs nothing. Finished videos are kept in the media library ({MEDIA_LIST}).
"""

# Used when the catalog cannot be fetched, so the tools are still listed and usable.
FALLBACK_INPUT_PROPERTIES: dict[str, dict[str, Any]] = {
    "prompt": {"type": "string", "description": "Text description of the video"},
    "duration": {"type": "string", "description": 'Video length in seconds, e.g. "5"'},
    "aspect_ratio": {"type": "string", "description": 'Output ratio, e.g. "16:9", "9:16", "1:1"'},
    "image_url": {"type": "string", "description": "Source image, for image-to-video models"},
    "negative_prompt": {"type": "string", "description": "What to avoid in the video"},
    "cfg_scale": {"type": "number", "description": "Guidance strength 0-1"},
    "generate_audio": {"type": "boolean", "description": "Enable native audio"},
}

_LOWER_BOUNDS = ("minimum", "minLength", "exclusiveMinimum", "minItems")
_UPPER_BOUNDS = ("maximum", "maxLength", "exclusiveMaximum", "maxItems")


# -- what the free tools answer: the API's wire models, plus what to do next and the cost --


def _job_field(name: str) -> Any:
    """A field described as the API's `Job` describes it."""
    return Field(description=Job.model_fields[name].description)


class JobSummary(BaseModel):
    """What an agent needs of the API's `Job`, with the video's URL lifted to the top."""

    job_id: uuid.UUID = Field(
        description=f"The job's id (`id` of the API's job; {STATUS} takes it)."
    )
    status: PublicStatus
    progress: int = Field(ge=0, le=100)
    queue_position: int | None = _job_field("queue_position")
    throttled_by: ThrottledBy | None = _job_field("throttled_by")
    model: str
    estimated_credits: float = _job_field("estimated_credits")
    credits_used: float | None = _job_field("credits_used")
    video_url: str | None = Field(description="A playable MP4 URL, once completed.")
    media_asset_id: uuid.UUID | None = Field(description="The video in the media library.")
    result: JobResult | None
    error: JobError | None = Field(description=f"Why the job {FAILED} (nothing is charged then).")
    billing: Billing | None = Field(
        description="What it is charged and what the provider billed for it (units, USD)."
    )
    created_at: datetime
    completed_at: datetime | None

    @classmethod
    def of(cls, job: Job, **more: Any) -> JobSummary:
        return cls(
            job_id=job.id,
            status=job.status,
            progress=job.progress,
            queue_position=job.queue_position,
            throttled_by=job.throttled_by,
            model=job.model,
            estimated_credits=job.estimated_credits,
            credits_used=job.credits_used,
            video_url=job.result.video.url if job.result else None,
            media_asset_id=job.result.media_asset_id if job.result else None,
            result=job.result,
            error=job.error,
            billing=job.billing,
            created_at=job.created_at,
            completed_at=job.completed_at,
            **more,
        )


def _next_steps() -> Any:
    return Field(description="The tool calls (or actions) that make sense next.")


def _cost() -> Any:
    return Field(default=0, description="Credits this call cost: none.")


class StatusAnswer(JobSummary):
    next_steps: list[str] = _next_steps()
    cost: Literal[0] = _cost()


class CancelAnswer(JobSummary):
    cancel_requested_at: datetime | None = _job_field("cancel_requested_at")
    next_steps: list[str] = _next_steps()
    cost: Literal[0] = _cost()


class PricingAnswer(PriceQuote):
    model_config = ConfigDict(title="PricingAnswer")

    next_steps: list[str] = _next_steps()
    cost: Literal[0] = _cost()


class MediaListAnswer(MediaPage):
    model_config = ConfigDict(title="MediaListAnswer")

    next_steps: list[str] = _next_steps()
    cost: Literal[0] = _cost()


class ModelsAnswer(BaseModel):
    models: list[dict[str, Any]] = Field(
        description="The API's models, without `input_schema` (its `parameters` say the same)."
    )
    count: int
    next_steps: list[str] = _next_steps()
    cost: Literal[0] = _cost()

    @classmethod
    def output_schema(cls) -> dict[str, Any]:
        """The schema, each of `models` described by the API's `Model`."""
        schema = cls.model_json_schema(mode="serialization")
        model = Model.model_json_schema(mode="serialization")
        del model["properties"]["input_schema"]
        model["required"].remove("input_schema")
        schema["$defs"] = {**schema.get("$defs", {}), **model.pop("$defs", {})}
        schema["properties"]["models"]["items"] = model
        return schema


# The input of the tools that act on one job (status, cancel).
JOB_ID_INPUT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "job_id": {
            "type": "string",
            "minLength": 1,
            "description": f"The job_id returned by {GENERATE}.",
        }
    },
    "required": ["job_id"],
    "additionalProperties": False,
}


def _output_schema(answer: type[BaseModel]) -> dict[str, Any]:
    return answer.model_json_schema(mode="serialization")


def build_tools(models: Sequence[Model] | None) -> list[types.Tool]:
    """The six tools; `models` is the catalog's `data`, or None when it could not be read."""
    model_ids = [model.id for model in models or ()]
    model_schema: dict[str, Any] = {
        "type": "string",
        "description": f"The model id (required; there is no default). {_models_hint(model_ids)}",
    }
    if model_ids:
        model_schema["enum"] = model_ids
    return [
        _generate_tool(models or (), model_schema),
        types.Tool(
            name=MODELS,
            title="List video models",
            description=(
                "List every video generation model: its id (pass it as `model` to "
                f"{GENERATE}), mode (text-to-video or image-to-video), what it is best for, "
                "the parameters its `input` accepts (type, allowed values, default, required), "
                "its price (USD per second of video, or per video) and typical render time. "
                "Free (cost: 0). Call this first when you do not know which model to use."
            ),
            input_schema={"type": "object", "properties": {}, "additionalProperties": False},
            output_schema=ModelsAnswer.output_schema(),
            annotations=_read_only("List video models"),
        ),
        types.Tool(
            name=STATUS,
            title="Check a video job",
            description=(
                f"Check a video job submitted with {GENERATE}: its status ({STATUSES}) and "
                f"progress; once {COMPLETED}, `video_url` (a playable MP4 URL). The output "
                "schema describes every field. Jobs are asynchronous and usually take 30-120 s: "
                f"call this every 15-30 s until the status is final ({FINAL_STATUSES}). "
                "Free (cost: 0)."
            ),
            input_schema=JOB_ID_INPUT,
            output_schema=_output_schema(StatusAnswer),
            annotations=_read_only("Check a video job"),
        ),
        types.Tool(
            name=PRICING,
            title="Preview a video's cost",
            description=(
                "Preview what a video will cost, in credits, before generating it: "
                "estimated_credits for `model` and `duration` (the unit price in USD, and "
                "the value of one credit, are in the answer too). Credits are charged only "
                "when a job completes. Free (cost: 0)."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "model": model_schema,
                    "duration": {
                        "type": ["string", "integer"],
                        "description": 'Video length in seconds, e.g. "5" (default: the '
                        "model's default). Ignored by models priced per video.",
                    },
                },
                "required": ["model"],
                "additionalProperties": False,
            },
            output_schema=_output_schema(PricingAnswer),
            annotations=_read_only("Preview a video's cost"),
        ),
        types.Tool(
            name=MEDIA_LIST,
            title="List the media library",
            description=(
                "List the account's media library, newest first: every completed video is "
                "kept there permanently (source_type video_generation), with its URL, size, "
                "length, frame size and source job. Free (cost: 0)."
            ),
            input_schema={
                "type": "object",
                "properties": {
                    "source_type": {
                        "type": "string",
                        "default": "video_generation",
                        "description": "Only assets from this source (default "
                        "video_generation, the generated videos).",
                    },
                    "search": {
                        "type": "string",
                        "description": "Only assets whose title or filename contain this text.",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": 100,
                        "default": 20,
                        "description": "At most this many assets.",
                    },
                    "offset": {
                        "type": "integer",
                        "minimum": 0,
                        "default": 0,
                        "description": "Skip this many (for the next page).",
                    },
                },
                "additionalProperties": False,
            },
            output_schema=_output_schema(MediaListAnswer),
            annotations=_read_only("List the media library"),
        ),
        types.Tool(
            name=CANCEL,
            title="Cancel a video job",
            description=(
                f"Cancel a video job submitted with {GENERATE} that is still queued or "
                f"processing: its credit hold is released and nothing is charged. A job already "
                f"at the provider is asked to stop (cancel_requested_at is set) and becomes "
                f"{CANCELLED} once it has; call {STATUS} to see it. Cancelling again answers the "
                f"same; a job already {COMPLETED} or {FAILED} cannot be cancelled. Free (cost: 0)."
            ),
            input_schema=JOB_ID_INPUT,
            output_schema=_output_schema(CancelAnswer),
            annotations=types.ToolAnnotations(
                title="Cancel a video job",
                read_only_hint=False,
                destructive_hint=True,
                idempotent_hint=True,
                open_world_hint=True,
            ),
        ),
    ]


def _generate_tool(models: Sequence[Model], model_schema: dict[str, Any]) -> types.Tool:
    description = (
        "Generate a video with an AI model: from a text prompt (text-to-video models) or by "
        "animating an image (image-to-video models). Costs credits: the model's price x the "
        f"duration (preview it with {PRICING}); they are held at submission and charged only "
        "if the job completes - a failed job costs nothing.\n"
        "A `model` is required; there is no default. Pick one from the list below (or call "
        f"{MODELS} for every model's parameters and price). Put the model's parameters in "
        "`input`: `prompt` for text-to-video, `image_url` for image-to-video, optionally "
        '`duration` (seconds as a string, e.g. "5"), `aspect_ratio`, `negative_prompt` ...\n'
        "Jobs are asynchronous (usually 30-120 s). With wait_seconds 0 (the default) this "
        f"returns at once with a job_id and status {PublicStatus.QUEUED.value}; then call "
        f"{STATUS} with that job_id every 15-30 s until status is {COMPLETED} (the answer then "
        f"has video_url and credits_used) or {FAILED}. Or pass wait_seconds (e.g. 180) to wait "
        "here for the video.\n"
        "Retrying is safe: the same intent_key returns the first job instead of paying twice; "
        "without one, an identical call in the same session returns the same job (pass a new "
        "intent_key to make a second video from the same arguments). max_credits refuses a "
        "job estimated above it, before anything is submitted."
    )
    if models:
        description += "\nModels:\n" + "\n".join(_model_line(model) for model in models)
    return types.Tool(
        name=GENERATE,
        title="Generate a video",
        description=description,
        input_schema={
            "type": "object",
            "properties": {
                "model": model_schema,
                "input": _input_schema(models),
                "max_credits": {
                    "type": "number",
                    "minimum": 0,
                    "description": "Refuse (and submit nothing) if the job's estimated cost, "
                    "in credits, is above this.",
                },
                "intent_key": {
                    **IDEMPOTENCY_KEY_SCHEMA,
                    "description": "Names this one video you intend to make; a retry with the "
                    "same intent_key (and arguments) returns the first job, never a second "
                    "charge. Use a new key for a new video.",
                },
                "wait_seconds": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_WAIT_SECONDS,
                    "default": 0,
                    "description": "0 returns at once (then poll with "
                    f"{STATUS}); otherwise wait up to this many seconds for the job "
                    "to finish and return the video URL if it did.",
                },
            },
            "required": ["model", "input"],
            "additionalProperties": False,
        },
        annotations=types.ToolAnnotations(
            title="Generate a video",
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=True,
        ),
    )


def _input_schema(models: Sequence[Model]) -> dict[str, Any]:
    """The union of every model's parameters: each model accepts a subset (see the list)."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        for name, parameter in model.parameters.items():
            schema = parameter.model_dump(mode="json", exclude={"required"})
            if schema.get("default") is None:
                schema.pop("default", None)
            variants.setdefault(name, []).append(schema)
    if not variants:
        return {
            "type": "object",
            "description": "The model's parameters; see naive_video_models.",
            "properties": FALLBACK_INPUT_PROPERTIES,
        }
    properties = {}
    for name, schemas in variants.items():
        merged = _union(schemas)
        if len(schemas) < len(models):
            merged["description"] = (
                merged.get("description", name) + f" (only some models take it; see {MODELS})"
            )
        properties[name] = merged
    return {
        "type": "object",
        "description": "The model's parameters. Text-to-video models need `prompt`; "
        "image-to-video models need `image_url`. Each model accepts only its own parameters "
        f"(listed per model below and by {MODELS}); others are refused.",
        "properties": properties,
        "additionalProperties": False,
    }


def _union(schemas: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One schema that accepts what any of `schemas` accepts (for the keys we use)."""
    merged: dict[str, Any] = {}
    for key in dict.fromkeys(key for schema in schemas for key in schema):
        values = [schema.get(key) for schema in schemas]
        present = [value for value in values if value is not None]
        everywhere = len(present) == len(values)
        if key == "enum":
            if everywhere:
                merged["enum"] = list(dict.fromkeys(item for value in present for item in value))
        elif key == "description":
            merged[key] = "; ".join(dict.fromkeys(str(value) for value in values if value))
        elif key in _LOWER_BOUNDS or key in _UPPER_BOUNDS:
            if everywhere:
                merged[key] = min(present) if key in _LOWER_BOUNDS else max(present)
        elif all(value == values[0] for value in values):
            merged[key] = values[0]
    return merged


def _model_line(model: Model) -> str:
    required = [name for name, parameter in model.parameters.items() if parameter.required]
    duration = model.parameters.get("duration")
    choices = (duration.model_extra or {}).get("enum") if duration else None
    length = f", duration {'/'.join(map(str, choices))} s" if choices else ""
    return (
        f"- {model.id}: {model.mode}, {model.best_for}; "
        f"${model.pricing.unit_price_usd}/{model.pricing.unit}; "
        f"needs {', '.join(required) or 'nothing'}{length}"
    )


def _models_hint(model_ids: Iterable[str]) -> str:
    ids = list(model_ids)
    if not ids:
        return f"Call {MODELS} for the valid ids."
    return f"One of the listed ids; {MODELS} describes each."


def _read_only(title: str) -> types.ToolAnnotations:
    return types.ToolAnnotations(
        title=title,
        read_only_hint=True,
        destructive_hint=False,
        idempotent_hint=True,
        open_world_hint=True,
    )
