"""The OpenAPI 3.1 document of the whole API, served at `GET /openapi.json`.

Built from the code's own constants and the built-in catalog (model ids, each model's
input JSON Schema), so it cannot drift from what the API validates. OpenAPI 3.1 schemas
are JSON Schema 2020-12, the dialect the catalog's input schemas are checked with.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from services.api.routes.video import MAX_IDEMPOTENCY_KEY
from shared.catalog import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, VideoModel, all_models
from shared.jobs import PUBLIC_STATUS
from shared.media.library import SOURCE_TYPES

Schema = dict[str, Any]

UUID: Schema = {"type": "string", "format": "uuid"}
TIMESTAMP: Schema = {"type": "string", "format": "date-time"}
STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
NUMBER: Schema = {"type": "number"}
CREDITS: Schema = {"type": "number", "description": "Credits, to two decimals."}
FREE_OBJECT: Schema = {"type": "object", "additionalProperties": True}
BEARER = [{"bearer": []}]
AUTHENTICATED = {"401": "Unauthorized", "429": "RateLimited", "503": "Unavailable"}


# ---- helpers ---------------------------------------------------------------------------


def _ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Schema], *, optional: tuple[str, ...] = ()) -> Schema:
    """A closed object whose properties are all present unless named `optional`."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


def _json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _error(
    description: str,
    code: str,
    members: dict[str, Schema] | None = None,
    *,
    optional: tuple[str, ...] = (),
    retry_after: bool = False,
) -> Schema:
    """A response in the one error shape, narrowed to its code and the members it carries."""
    detail: Schema = {"type": "object", "properties": {"code": {"const": code}, **(members or {})}}
    required = [name for name in members or {} if name not in optional]
    if required:
        detail["required"] = required
    schema = {"allOf": [_ref("Error"), {"properties": {"error": detail}}]}
    headers = {"headers": {"Retry-After": _ref("RetryAfter", "headers")}} if retry_after else {}
    return _json(description, schema, **headers)


def _param(where: str, name: str, schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "description": description,
        "schema": schema,
        **extra,
    }


def _limit(default: int, maximum: int) -> Schema:
    return _param(
        "query",
        "limit",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": default},
        "Page size.",
    )


def _operation(
    endpoint: str,
    tag: str,
    summary: str,
    responses: dict[str, Schema],
    *,
    security: list[dict[str, list[str]]] | None = None,
    **extra: Any,
) -> Schema:
    """An operation; every one can answer 500, authenticated ones 401, 429 and 503 too."""
    shared = {**(AUTHENTICATED if security else {}), "500": "InternalError"}
    every = {status: _ref(name, "responses") for status, name in shared.items()}
    return {
        "operationId": endpoint,
        "tags": [tag],
        "summary": summary,
        **extra,
        "security": security or [],
        "responses": dict(sorted({**every, **responses}.items())),
    }


def _component_name(model_id: str) -> str:
    return "GenerateRequest." + re.sub(r"[^A-Za-z0-9_-]+", "_", model_id)


# ---- schemas ---------------------------------------------------------------------------


def _generate_request(model: VideoModel) -> Schema:
    return {
        "title": model.name,
        **_object(
            {
                "model": {"type": "string", "const": model.id},
                "input": {**model.input_schema, "description": f"Parameters of {model.id}."},
                "metadata": _ref("Metadata"),
            },
            optional=("metadata",),
        ),
    }


def _schemas() -> dict[str, Schema]:
    models = all_models()
    video = _object(
        {
            "url": {**STRING, "description": "Our signed copy; the provider's if not ingested."},
            "content_type": STRING,
            "file_size": _nullable(INTEGER),
            "provider_url": {**STRING, "description": "The provider's URL, once ingested."},
        },
        optional=("provider_url",),
    )
    return {
        "Error": {
            "type": "object",
            "description": "The one error shape; `error` has more members for some codes.",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": STRING, "message": STRING},
                    "additionalProperties": True,
                }
            },
        },
        "Metadata": {**FREE_OBJECT, "description": "Free-form, returned as given."},
        "GenerateRequest": {
            "description": "`model` picks the branch; an unknown model answers 404 invalid_model.",
            "oneOf": [_ref(_component_name(model.id)) for model in models],
            "discriminator": {
                "propertyName": "model",
                "mapping": {
                    model.id: f"#/components/schemas/{_component_name(model.id)}"
                    for model in models
                },
            },
        },
        **{_component_name(model.id): _generate_request(model) for model in models},
        "GenerateAccepted": _object(
            {
                "job_id": UUID,
                "status": _ref("JobStatus"),
                "type": STRING,
                "model": STRING,
                "estimated_seconds": INTEGER,
                "estimated_credits": CREDITS,
                "hint": STRING,
            }
        ),
        "JobStatus": {"type": "string", "enum": list(dict.fromkeys(PUBLIC_STATUS.values()))},
        "Job": _object(
            {
                "id": UUID,
                "type": {**STRING, "examples": ["video_generation"]},
                "status": _ref("JobStatus"),
                "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                "queue_position": _nullable(INTEGER),
                "model": STRING,
                "input": {**FREE_OBJECT, "description": "The input, defaults filled in."},
                "result": _nullable(_object({"video": video, "media_asset_id": _nullable(UUID)})),
                "error": _nullable(_object({"code": STRING, "message": STRING})),
                "credits_used": _nullable(CREDITS),
                "estimated_credits": CREDITS,
                "estimated_seconds": INTEGER,
                "provider_request_id": _nullable(STRING),
                "cancel_requested_at": _nullable(TIMESTAMP),
                "logs": {"type": "array", "items": FREE_OBJECT},
                "created_at": TIMESTAMP,
                "started_at": _nullable(TIMESTAMP),
                "completed_at": _nullable(TIMESTAMP),
                "metadata": _ref("Metadata"),
            }
        ),
        "JobList": _object(
            {
                "data": {"type": "array", "items": _ref("Job")},
                "next_cursor": _nullable(STRING),
                "has_more": {"type": "boolean"},
            }
        ),
        "Model": _object(
            {
                "id": STRING,
                "name": STRING,
                "mode": {"type": "string", "enum": [TEXT_TO_VIDEO, IMAGE_TO_VIDEO]},
                "best_for": STRING,
                "description": STRING,
                "parameters": {
                    "type": "object",
                    "description": "Each parameter's JSON Schema, with `required` and `default`.",
                    "additionalProperties": {
                        "type": "object",
                        "required": ["type", "description", "required", "default"],
                        "properties": {"required": {"type": "boolean"}, "type": STRING},
                    },
                },
                "input_schema": {**FREE_OBJECT, "description": "The JSON Schema of `input`."},
                "pricing": _object(
                    {
                        "unit_price_usd": NUMBER,
                        "unit": _ref("PriceUnit"),
                        "credit_value_usd": NUMBER,
                    }
                ),
                "estimated_seconds": INTEGER,
            }
        ),
        "ModelList": _object(
            {
                "data": {"type": "array", "items": _ref("Model")},
                "count": INTEGER,
                "source": {**STRING, "description": "`builtin`, or the provider that priced."},
            }
        ),
        "PriceUnit": {"type": "string", "enum": ["second", "video"]},
        "Pricing": _object(
            {
                "model": STRING,
                "duration": {**INTEGER, "description": "Output seconds."},
                "estimated_credits": CREDITS,
                "unit_price_usd": NUMBER,
                "unit": _ref("PriceUnit"),
                "credit_value_usd": NUMBER,
            }
        ),
        "MediaAsset": _object(
            {
                "id": UUID,
                "url": {**STRING, "description": "Signed content URL, valid 7 days."},
                "poster_url": STRING,
                "filename": STRING,
                "content_type": STRING,
                "size_bytes": INTEGER,
                "duration_seconds": _nullable(NUMBER),
                "width": _nullable(INTEGER),
                "height": _nullable(INTEGER),
                "source_type": {"type": "string", "enum": list(SOURCE_TYPES)},
                "source_job_id": _nullable(UUID),
                "title": _nullable(STRING),
                "tags": {"type": "array", "items": STRING},
                "created_at": TIMESTAMP,
            }
        ),
        "MediaList": _object(
            {
                "data": {"type": "array", "items": _ref("MediaAsset")},
                "total": INTEGER,
                "limit": INTEGER,
                "offset": INTEGER,
            }
        ),
        "Credits": _object(
            {
                "balance": CREDITS,
                "held": CREDITS,
                "available": CREDITS,
                "credit_value_usd": NUMBER,
                "entries": {
                    "type": "array",
                    "items": _object(
                        {
                            "id": UUID,
                            "kind": {
                                "type": "string",
                                "enum": ["topup", "hold", "capture", "release"],
                            },
                            "amount": CREDITS,
                            "job_id": _nullable(UUID),
                            "note": _nullable(STRING),
                            "created_at": TIMESTAMP,
                        }
                    ),
                },
            }
        ),
        "FalCallback": {
            "type": "object",
            "required": ["request_id", "status"],
            "properties": {
                "request_id": STRING,
                "gateway_request_id": STRING,
                "status": {"type": "string", "enum": ["OK", "ERROR"]},
                "payload": {"description": "The model's output, or error details."},
                "error": _nullable(STRING),
            },
        },
    }


def _responses() -> dict[str, Schema]:
    fields = {
        "type": "object",
        "additionalProperties": STRING,
        "description": "What is wrong with each named field (`input.duration`, `limit`, …).",
    }
    return {
        "Unauthorized": _error("No valid API key.", "unauthorized"),
        "NotFound": _error(
            "Not found (another account's object is not found either).", "not_found"
        ),
        "InvalidModel": _error(
            "Unknown model.",
            "invalid_model",
            {"models_url": STRING, "suggestions": {"type": "array", "items": STRING}},
        ),
        "InvalidInput": _error(
            "Invalid input; each bad field is named.",
            "invalid_input",
            {"fields": fields, "models_url": STRING},
            optional=("models_url",),
        ),
        "PayloadTooLarge": _error("The body is over the size limit.", "payload_too_large"),
        "RateLimited": _error("Too many requests for this key.", "rate_limited", retry_after=True),
        "InternalError": _error("Something went wrong on our side.", "internal_error"),
        "Unavailable": _error("The database is unavailable.", "unavailable", retry_after=True),
    }


# ---- paths -----------------------------------------------------------------------------


def _job_operation(endpoint: str, summary: str) -> Schema:
    return _operation(
        endpoint,
        "jobs",
        summary,
        {"200": _json("The job.", _ref("Job")), "404": _ref("NotFound", "responses")},
        security=BEARER,
        parameters=[_param("path", "job_id", UUID, "The job's id.")],
    )


def _media_file_operation(endpoint: str, summary: str, media_type: str) -> Schema:
    """The video or poster bytes: with a bearer key, or a signed URL's `token` alone."""
    range_header = _param("header", "Range", STRING, "A byte range, e.g. `bytes=0-1023`.")
    return _operation(
        endpoint,
        "media",
        summary,
        {
            "200": {"description": "The bytes.", "content": {media_type: {}}},
            "206": {
                "description": "The requested range.",
                "headers": {"Content-Range": {"required": True, "schema": STRING}},
                "content": {media_type: {}},
            },
            "304": {"description": "Not modified."},
            "404": _ref("NotFound", "responses"),
            "416": {
                **_error("The range is not satisfiable.", "range_not_satisfiable"),
                "headers": {"Content-Range": {"required": True, "schema": STRING}},
            },
        },
        security=[*BEARER, {"signedUrl": []}],
        parameters=[_param("path", "asset_id", UUID, "The asset's id."), range_header],
    )


def _paths() -> dict[str, Schema]:
    durations = [
        int(value)
        for model in all_models()
        for value in model.properties.get("duration", {}).get("enum", [])
    ]
    model_ids = [model.id for model in all_models()]
    duration = {"type": "integer", "minimum": min(durations), "maximum": max(durations)}
    model_param = _param(
        "query", "model", {"type": "string", "enum": model_ids}, "A model id.", required=True
    )
    status_param = _param("query", "status", _ref("JobStatus"), "Only jobs in this status.")
    fal_headers = [
        _param("header", "X-Fal-Webhook-Request-Id", STRING, "fal's request id.", required=True),
        _param("header", "X-Fal-Webhook-User-Id", STRING, "fal's user id.", required=True),
        _param(
            "header",
            "X-Fal-Webhook-Timestamp",
            {"type": "string", "pattern": "^[0-9]+$"},
            "Unix seconds; refused beyond ±300 s of our clock.",
            required=True,
        ),
        _param(
            "header",
            "X-Fal-Webhook-Signature",
            {"type": "string", "pattern": "^[0-9a-fA-F]+$"},
            "Hex Ed25519 signature of `request_id\\nuser_id\\ntimestamp\\nsha256_hex(body)`, "
            "by a key of fal's JWKS.",
            required=True,
        ),
    ]
    job_links = {
        name: {"operationId": endpoint, "parameters": {"job_id": "$response.body#/job_id"}}
        for name, endpoint in (("GetJob", "jobs.get_job"), ("CancelJob", "jobs.cancel_job"))
    }
    return {
        "/v1/video/generate": {
            "post": _operation(
                "video.generate",
                "video",
                "Submit a video generation job",
                {
                    "202": _json(
                        "Accepted (or replayed by `Idempotency-Key`): poll the job.",
                        _ref("GenerateAccepted"),
                        headers={
                            "Location": {
                                "required": True,
                                "description": "`/v1/jobs/{job_id}`",
                                "schema": STRING,
                            },
                            "Idempotent-Replayed": {
                                "description": "`true` when an earlier job is returned.",
                                "schema": {"type": "string", "enum": ["true"]},
                            },
                        },
                        links=job_links,
                    ),
                    "402": _error(
                        "Not enough available credits for the estimate.",
                        "insufficient_credits",
                        {
                            "estimated_credits": CREDITS,
                            "available_credits": CREDITS,
                            "pricing_url": STRING,
                        },
                    ),
                    "404": _ref("InvalidModel", "responses"),
                    "409": _error(
                        "This Idempotency-Key was used with another body.",
                        "idempotency_conflict",
                        {"job_id": UUID},
                    ),
                    "413": _ref("PayloadTooLarge", "responses"),
                    "422": _ref("InvalidInput", "responses"),
                },
                security=BEARER,
                parameters=[
                    _param(
                        "header",
                        "Idempotency-Key",
                        {"type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY},
                        "The same key and body return the first job; another body is refused.",
                    )
                ],
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("GenerateRequest")}},
                },
            )
        },
        "/v1/video/models": {
            "get": _operation(
                "video.models",
                "video",
                "The model catalog",
                {"200": _json("The models on offer.", _ref("ModelList"))},
                security=BEARER,
            )
        },
        "/v1/video/pricing": {
            "get": _operation(
                "video.price_preview",
                "video",
                "The credits a job would cost",
                {
                    "200": _json("The quote.", _ref("Pricing")),
                    "404": _ref("InvalidModel", "responses"),
                    "422": _ref("InvalidInput", "responses"),
                },
                security=BEARER,
                parameters=[
                    model_param,
                    _param(
                        "query",
                        "duration",
                        duration,
                        "Output seconds, one the model accepts (its default if omitted; "
                        "ignored by models priced per video).",
                    ),
                    _param("query", "dur", duration, "Alias of `duration`.", deprecated=True),
                ],
            )
        },
        "/v1/video/{job_id}": {"get": _job_operation("video.get_video_job", "A job (alias)")},
        "/v1/jobs": {
            "get": _operation(
                "jobs.list_jobs",
                "jobs",
                "The account's jobs, newest first",
                {
                    "200": _json("A page of jobs.", _ref("JobList")),
                    "422": _ref("InvalidInput", "responses"),
                },
                security=BEARER,
                parameters=[
                    status_param,
                    _param("query", "type", STRING, "Only jobs of this type."),
                    _limit(20, 100),
                    _param("query", "cursor", STRING, "`next_cursor` of the previous page."),
                ],
            )
        },
        "/v1/jobs/{job_id}": {
            "get": _job_operation("jobs.get_job", "A job"),
            "delete": _operation(
                "jobs.cancel_job",
                "jobs",
                "Cancel a queued or processing job",
                {
                    "200": _json("Cancelled; its hold is released.", _ref("Job")),
                    "202": _json("The provider is asked to stop it.", _ref("Job")),
                    "404": _ref("NotFound", "responses"),
                    "409": _error(
                        "The job was delivered and can no longer be cancelled.",
                        "not_cancellable",
                        {"status": _ref("JobStatus")},
                    ),
                },
                security=BEARER,
                parameters=[_param("path", "job_id", UUID, "The job's id.")],
            ),
        },
        "/v1/media": {
            "get": _operation(
                "media.list_media",
                "media",
                "The media library, newest first",
                {
                    "200": _json("A page of assets.", _ref("MediaList")),
                    "422": _ref("InvalidInput", "responses"),
                },
                security=BEARER,
                parameters=[
                    _param(
                        "query",
                        "source_type",
                        {"type": "string", "enum": list(SOURCE_TYPES)},
                        "Only assets of this source.",
                    ),
                    _param("query", "search", STRING, "In the title or file name."),
                    _limit(20, 100),
                    _param(
                        "query",
                        "offset",
                        {"type": "integer", "minimum": 0, "maximum": 1_000_000, "default": 0},
                        "Assets to skip.",
                    ),
                ],
            )
        },
        "/v1/media/{asset_id}": {
            "get": _operation(
                "media.get_media",
                "media",
                "A media asset",
                {
                    "200": _json("The asset.", _ref("MediaAsset")),
                    "404": _ref("NotFound", "responses"),
                },
                security=BEARER,
                parameters=[_param("path", "asset_id", UUID, "The asset's id.")],
            )
        },
        "/v1/media/{asset_id}/content": {
            "get": _media_file_operation("media.media_content", "The video", "video/mp4")
        },
        "/v1/media/{asset_id}/poster": {
            "get": _media_file_operation("media.media_poster", "The poster frame", "image/jpeg")
        },
        "/v1/credits": {
            "get": _operation(
                "credits.credits",
                "credits",
                "Balance, held, available and the ledger entries",
                {
                    "200": _json("The account's credits.", _ref("Credits")),
                    "422": _ref("InvalidInput", "responses"),
                },
                security=BEARER,
                parameters=[_limit(100, 1000)],
            )
        },
        "/v1/webhooks/fal": {
            "post": _operation(
                "webhooks.fal_callback",
                "webhooks",
                "fal's signed completion callback (no API key: the signature authenticates)",
                {
                    "200": _json(
                        "Applied, or ignored when the job has moved on.",
                        _object(
                            {
                                "status": {
                                    "type": "string",
                                    "enum": ["delivered", "failed", "cancelled", "ignored"],
                                }
                            }
                        ),
                    ),
                    "401": _error("Unsigned, forged, stale or malformed.", "invalid_signature"),
                    "413": _ref("PayloadTooLarge", "responses"),
                    "503": _ref("Unavailable", "responses"),
                },
                parameters=fal_headers,
                requestBody={
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FalCallback")}},
                },
            )
        },
        "/healthz": {
            "get": _operation(
                "ops.healthz",
                "operations",
                "Liveness",
                {"200": _json("Alive.", _object({"status": {"const": "ok"}}))},
            )
        },
        "/readyz": {
            "get": _operation(
                "ops.readyz",
                "operations",
                "Readiness (the database only)",
                {
                    "200": _json("Ready.", _object({"status": {"const": "ready"}})),
                    "503": _ref("Unavailable", "responses"),
                },
            )
        },
        "/metrics": {
            "get": _operation(
                "ops.metrics",
                "operations",
                "Prometheus metrics",
                {
                    "200": {
                        "description": "The Prometheus text format.",
                        "content": {"text/plain": {"schema": STRING}},
                    }
                },
            )
        },
        "/openapi.json": {
            "get": _operation(
                "ops.openapi_document",
                "operations",
                "This document",
                {
                    "200": _json(
                        "OpenAPI 3.1.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    )
                },
            )
        },
    }


@cache
def document() -> Schema:
    """The OpenAPI document (built once per process)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Naive Video API",
            "version": "1",
            "description": (
                "Asynchronous video generation: submit a job, poll it, fetch the video. "
                "Every `/v1` route but fal's webhook needs `Authorization: Bearer nv_sk_…` and "
                "is rate limited per key (`X-RateLimit-*` headers; 429 `rate_limited` with "
                "`Retry-After`). Errors have one shape: "
                '`{"error": {"code", "message", …}}`.'
            ),
        },
        "tags": [
            {"name": name}
            for name in ("video", "jobs", "media", "credits", "webhooks", "operations")
        ],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "headers": {
                "RetryAfter": {
                    "required": True,
                    "description": "Seconds to wait before retrying.",
                    "schema": {"type": "integer", "minimum": 0},
                }
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "nv_sk_…",
                    "description": "An API key (`naive admin …` creates them).",
                },
                "signedUrl": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "token",
                    "description": "The token of a signed media URL (`url` of an asset).",
                },
            },
        },
    }
