"""The tools' names, descriptions and input schemas, built from the API's model catalog.

The descriptions are written for an agent that has read none of our docs: each says what the
tool costs, what to call before and after it, and how to get from a prompt to a video URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import mcp_types as types

GENERATE = "naive_generate_video"
MODELS = "naive_video_models"
STATUS = "naive_video_status"
PRICING = "naive_video_pricing"
MEDIA_LIST = "naive_media_list"
TOOL_NAMES = (GENERATE, MODELS, STATUS, PRICING, MEDIA_LIST)

MAX_WAIT_SECONDS = 600
MAX_INTENT_KEY = 200

INSTRUCTIONS = f"""\
Naive Video generates videos with AI models, asynchronously, for credits.
Workflow: {MODELS} (pick a model; there is no default) → {PRICING} (preview the cost) →
{GENERATE} (submit; returns a job_id at once, or waits up to wait_seconds) →
{STATUS} every 15-30 s until status is "completed" (video_url is then set) or "failed".
Credits are held at submission and charged only when a job completes; a failed or cancelled
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


def build_tools(models: Sequence[Mapping[str, Any]] | None) -> list[types.Tool]:
    """The five tools; `models` is the catalog's `data`, or None when it could not be read."""
    model_ids = [str(model["id"]) for model in models or () if model.get("id")]
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
            annotations=_read_only("List video models"),
        ),
        types.Tool(
            name=STATUS,
            title="Check a video job",
            description=(
                f"Check a video job submitted with {GENERATE}: status (queued, processing, "
                "completed, failed, cancelled), progress (0-100), and once completed "
                "`video_url` (a playable MP4 URL) and `credits_used`; if failed, `error` "
                "(nothing is charged then). Jobs are asynchronous and usually take 30-120 s: "
                "call this every 15-30 s until the status is completed, failed or cancelled. "
                "Free (cost: 0)."
            ),
            input_schema={
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
            },
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
            annotations=_read_only("List the media library"),
        ),
    ]


def _generate_tool(models: Sequence[Mapping[str, Any]], model_schema: dict[str, Any]) -> types.Tool:
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
        f"returns at once with a job_id and status queued; then call {STATUS} with that "
        "job_id every 15-30 s until status is completed (the answer then has video_url and "
        "credits_used) or failed. Or pass wait_seconds (e.g. 180) to wait here for the video.\n"
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
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_INTENT_KEY,
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


def _input_schema(models: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The union of every model's parameters: each model accepts a subset (see the list)."""
    variants: dict[str, list[dict[str, Any]]] = {}
    for model in models:
        for name, parameter in (model.get("parameters") or {}).items():
            schema = {key: value for key, value in parameter.items() if key != "required"}
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
        if key == "enum":
            if all(value is not None for value in values):
                merged["enum"] = list(dict.fromkeys(item for value in values for item in value))
        elif key == "description":
            merged[key] = "; ".join(dict.fromkeys(str(value) for value in values if value))
        elif key in _LOWER_BOUNDS or key in _UPPER_BOUNDS:
            if all(value is not None for value in values):
                merged[key] = min(values) if key in _LOWER_BOUNDS else max(values)
        elif all(value == values[0] for value in values):
            merged[key] = values[0]
    return merged


def _model_line(model: Mapping[str, Any]) -> str:
    parameters = model.get("parameters") or {}
    required = [name for name, spec in parameters.items() if spec.get("required")]
    pricing = model.get("pricing") or {}
    duration = parameters.get("duration") or {}
    choices = duration.get("enum")
    length = f", duration {'/'.join(map(str, choices))} s" if choices else ""
    return (
        f"- {model.get('id')}: {model.get('mode')}, {model.get('best_for')}; "
        f"${pricing.get('unit_price_usd')}/{pricing.get('unit', 'second')}; "
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
