"""The model catalog: what each model accepts, what it costs, how long it takes.

This is the built-in catalog of the spec's models; each model's parameters are a
JSON Schema, so the API validates inputs with `jsonschema` and names every bad field.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
from typing import Any

from jsonschema import Draft202012Validator

from shared.errors import InvalidInput, InvalidModel, echo

TEXT_TO_VIDEO = "text-to-video"
IMAGE_TO_VIDEO = "image-to-video"

ASPECT_RATIOS = ["16:9", "9:16", "1:1"]


def _param(type_: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"type": type_, "description": description, **schema}


# A prompt of only whitespace describes nothing, yet would be rendered and charged.
NOT_BLANK = r"\S"
PROMPT = _param(
    "string", "Text description of the video", minLength=1, maxLength=2500, pattern=NOT_BLANK
)
OPTIONAL_PROMPT = _param(
    "string", "Optional motion guidance", minLength=1, maxLength=2500, pattern=NOT_BLANK
)
NEGATIVE_PROMPT = _param("string", "What to avoid in the video", maxLength=2500)
ASPECT_RATIO = _param("string", "Output ratio", enum=ASPECT_RATIOS, default="16:9")
CFG_SCALE = _param(
    "number", "Guidance strength 0-1 (higher = more literal)", minimum=0, maximum=1, default=0.5
)
GENERATE_AUDIO = _param("boolean", "Enable native audio", default=True)
IMAGE_URL = _param(
    "string",
    "Source image (https, or a data: URL)",
    minLength=1,
    maxLength=2_000_000,
    pattern="^(https?://|data:image/)",
)
KLING_V3_DURATION = _param(
    "string", "Video length in seconds", enum=[str(s) for s in range(3, 16)], default="5"
)
FIVE_OR_TEN = _param("string", "Video length in seconds", enum=["5", "10"], default="5")


@dataclass(frozen=True)
class VideoModel:
    id: str
    name: str
    mode: str
    best_for: str
    description: str
    properties: dict[str, dict[str, Any]]
    required: tuple[str, ...]
    unit_price_usd: Decimal
    price_unit: str  # "second" of output, or "video"
    estimated_seconds: int
    # Output length of models priced per video, which take no duration.
    fixed_duration_seconds: int | None = None
    # Our input names that the model calls otherwise (Kling v3: image_url → start_image_url).
    provider_fields: dict[str, str] = field(default_factory=dict)

    @property
    def input_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "properties": self.properties,
            "required": list(self.required),
            "additionalProperties": False,
        }

    @cached_property
    def validator(self) -> Draft202012Validator:
        """The input schema's validator, built once per model: building it on every submit
        cost more than the check itself."""
        return Draft202012Validator(self.input_schema)

    @cached_property
    def defaults(self) -> dict[str, Any]:
        """The parameters' defaults (read-only: copy before changing)."""
        return {
            name: schema["default"]
            for name, schema in self.properties.items()
            if "default" in schema
        }

    @property
    def deadline_seconds(self) -> int:
        """How long a job may take end to end before it is failed and released."""
        return max(600, self.estimated_seconds * 10)

    def output_seconds(self, normalized_input: dict[str, Any]) -> int:
        if self.fixed_duration_seconds is not None:
            return self.fixed_duration_seconds
        return int(normalized_input["duration"])

    def to_dict(self) -> dict[str, Any]:
        parameters = {
            name: {**schema, "required": name in self.required, "default": schema.get("default")}
            for name, schema in self.properties.items()
        }
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.mode,
            "best_for": self.best_for,
            "description": self.description,
            "parameters": parameters,
            "input_schema": self.input_schema,
            "pricing": {"unit_price_usd": float(self.unit_price_usd), "unit": self.price_unit},
            "estimated_seconds": self.estimated_seconds,
        }


def _kling(tier: str, mode: str, price: str, best_for: str, seconds: int) -> VideoModel:
    common = {
        "duration": KLING_V3_DURATION,
        "negative_prompt": NEGATIVE_PROMPT,
        "cfg_scale": CFG_SCALE,
        "generate_audio": GENERATE_AUDIO,
    }
    if mode == TEXT_TO_VIDEO:
        properties = {"prompt": PROMPT, **common, "aspect_ratio": ASPECT_RATIO}
        required: tuple[str, ...] = ("prompt",)
        fields: dict[str, str] = {}
    else:
        properties = {"image_url": IMAGE_URL, "prompt": OPTIONAL_PROMPT, **common}
        required, fields = ("image_url",), {"image_url": "start_image_url"}
    return VideoModel(
        id=f"fal-ai/kling-video/v3/{tier}/{mode}",
        name=f"Kling v3 {tier.title()} ({mode})",
        mode=mode,
        best_for=best_for,
        description=f"Kuaishou Kling 3.0 {tier} tier, {mode}, 3-15 s, optional native audio.",
        properties=properties,
        required=required,
        unit_price_usd=Decimal(price),
        price_unit="second",
        estimated_seconds=seconds,
        provider_fields=fields,
    )


def _minimax(mode: str) -> VideoModel:
    optimizer = _param("boolean", "Let the model rewrite the prompt", default=True)
    image = mode == IMAGE_TO_VIDEO
    return VideoModel(
        id="fal-ai/minimax-video/video-01-live" + ("/image-to-video" if image else ""),
        name="MiniMax Video-01 Live" + (" (image-to-video)" if image else ""),
        mode=mode,
        best_for="Fast image animation" if image else "Fast generation",
        description=f"MiniMax Hailuo video-01-live, {mode}: about 6 s, priced per video.",
        properties={
            **({"image_url": IMAGE_URL} if image else {}),
            "prompt": PROMPT,
            "prompt_optimizer": optimizer,
        },
        required=("image_url", "prompt") if image else ("prompt",),
        unit_price_usd=Decimal("0.50"),
        price_unit="video",
        estimated_seconds=30,
        fixed_duration_seconds=6,
    )


BUILTIN_MODELS: tuple[VideoModel, ...] = (
    _kling("pro", TEXT_TO_VIDEO, "0.07", "Highest quality, native audio", 60),
    _kling("pro", IMAGE_TO_VIDEO, "0.07", "Animate still images", 60),
    _kling("standard", TEXT_TO_VIDEO, "0.05", "Good quality, faster", 45),
    _kling("standard", IMAGE_TO_VIDEO, "0.05", "Animate still images, faster", 45),
    VideoModel(
        id="fal-ai/kling-video/v2.6/pro/image-to-video",
        name="Kling v2.6 Pro (image-to-video)",
        mode=IMAGE_TO_VIDEO,
        best_for="Animate still images, 5 or 10 s",
        description="Kling 2.6 pro image-to-video; takes image_url directly.",
        properties={
            "image_url": IMAGE_URL,
            "prompt": OPTIONAL_PROMPT,
            "duration": FIVE_OR_TEN,
            "negative_prompt": NEGATIVE_PROMPT,
            "cfg_scale": CFG_SCALE,
        },
        required=("image_url",),
        unit_price_usd=Decimal("0.07"),
        price_unit="second",
        estimated_seconds=60,
    ),
    _minimax(TEXT_TO_VIDEO),
    _minimax(IMAGE_TO_VIDEO),
    VideoModel(
        id="fal-ai/wan/v2.7/text-to-video",
        name="Wan 2.7 (text-to-video)",
        mode=TEXT_TO_VIDEO,
        best_for="High resolution options",
        description="Alibaba Wan 2.7 text-to-video at 480p, 720p or 1080p.",
        properties={
            "prompt": PROMPT,
            "negative_prompt": NEGATIVE_PROMPT,
            "duration": FIVE_OR_TEN,
            "aspect_ratio": ASPECT_RATIO,
            "resolution": _param(
                "string", "Output resolution", enum=["480p", "720p", "1080p"], default="720p"
            ),
        },
        required=("prompt",),
        unit_price_usd=Decimal("0.10"),
        price_unit="second",
        estimated_seconds=90,
    ),
)


@dataclass(frozen=True)
class Catalog:
    """The models on offer, and where their listing and prices came from."""

    models: tuple[VideoModel, ...]
    source: str  # "builtin", or the provider whose platform API priced them

    def get(self, model_id: Any) -> VideoModel:
        if not isinstance(model_id, str) or not model_id:
            raise InvalidInput(
                "A model is required: there is no default.",
                fields={"model": "required; pick an id from GET /v1/video/models"},
                models_url="/v1/video/models",
            )
        by_id = {model.id: model for model in self.models}
        if model_id not in by_id:
            raise InvalidModel(
                f"Unknown model {echo(model_id)}.",
                models_url="/v1/video/models",
                suggestions=difflib.get_close_matches(model_id, list(by_id), n=3, cutoff=0.5),
            )
        return by_id[model_id]


BUILTIN = Catalog(BUILTIN_MODELS, "builtin")


def all_models() -> tuple[VideoModel, ...]:
    """The built-in models (what the live catalog overlays prices on)."""
    return BUILTIN_MODELS


def get_model(model_id: Any) -> VideoModel:
    """A model as the built-in catalog defines it (its parameters never come from outside)."""
    return BUILTIN.get(model_id)


def normalize_input(model: VideoModel, raw: Any) -> dict[str, Any]:
    """Check `raw` against the model's schema; return it with defaults filled in.

    A whole-number duration (5) is accepted for the documented string ("5").
    """
    if not isinstance(raw, dict):
        raise InvalidInput("`input` must be a JSON object.", fields={"input": "must be an object"})
    candidate = dict(raw)
    duration = candidate.get("duration")
    if isinstance(duration, int) and not isinstance(duration, bool):
        candidate["duration"] = str(duration)
    problems: dict[str, str] = {}
    for error in model.validator.iter_errors(candidate):
        problems.update(_describe(error))
    if problems:
        raise InvalidInput(
            "Some input fields are invalid: " + ", ".join(sorted(problems)) + ".",
            fields=problems,
            models_url="/v1/video/models",
        )
    return {**model.defaults, **candidate}


def _describe(error: Any) -> dict[str, str]:
    if error.validator == "required":
        name = error.message.split("'")[1]
        return {f"input.{name}": "is required"}
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema["properties"]))
        return {f"input.{name}": "is not a parameter of this model" for name in extra}
    name = ".".join(str(part) for part in error.absolute_path) or "input"
    if error.validator == "enum":
        allowed = ", ".join(repr(value) for value in error.validator_value)
        return {f"input.{name}": f"must be one of {allowed}"}
    if error.validator == "type":
        return {f"input.{name}": f"must be of type {error.validator_value}"}
    if error.validator == "pattern" and error.validator_value == NOT_BLANK:
        return {f"input.{name}": "must not be blank (only whitespace)"}
    # jsonschema's messages quote the value whole (a 2 MB data: URL, say): quoted short.
    return {f"input.{name}": error.message.replace(repr(error.instance), echo(error.instance))}
