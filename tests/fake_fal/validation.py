"""Check a model's arguments the way the hosted model would, and fill in its defaults."""

from __future__ import annotations

from typing import Any

from shared.catalog import VideoModel


def argument_problems(model: VideoModel, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    """fal's 422 `detail` items for `arguments`, in the model's own field names; [] when fine."""
    problems: list[tuple[str, str]] = []
    for name in model.required:
        field = model.provider_fields.get(name, name)
        if field not in arguments:
            problems.append((field, "field required"))
    prompt = arguments.get("prompt")
    if "prompt" in arguments and not (isinstance(prompt, str) and prompt.strip()):
        problems.append(("prompt", "prompt must be a non-empty string"))
    if "duration" in arguments:
        problems.extend(_duration_problems(model, arguments["duration"]))
    return [{"loc": ["body", field], "msg": msg, "type": "value_error"} for field, msg in problems]


def with_defaults(model: VideoModel, arguments: dict[str, Any]) -> dict[str, Any]:
    """`arguments` with the model's defaults for what they leave out."""
    defaults = {
        model.provider_fields.get(name, name): schema["default"]
        for name, schema in model.properties.items()
        if "default" in schema
    }
    return {**defaults, **arguments}


def _duration_problems(model: VideoModel, duration: Any) -> list[tuple[str, str]]:
    if not isinstance(duration, str):
        return [("duration", 'duration must be a string, e.g. "5"')]
    allowed = model.properties.get("duration", {}).get("enum")
    if allowed and duration not in allowed:
        return [("duration", f"duration must be one of {', '.join(allowed)}")]
    return []
