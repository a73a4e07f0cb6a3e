"""The API's contract, declared once per route: the same declaration parses the request,
renders the answer and builds the OpenAPI 3.1 document served at `GET /openapi.json`.

A route names its query and body models, its replies (status → pydantic model) and the
domain errors it may raise; `document()` assembles pydantic's JSON Schema of those
classes. OpenAPI 3.1 schemas are JSON Schema 2020-12, the dialect pydantic writes and the
catalog's input schemas use.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from flask import Blueprint, Response, jsonify, request
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from services.api.params import json_body
from shared.errors import DomainError, ErrorBody, InvalidInput, Unauthorized, shorten

Schema = dict[str, Any]
View = Callable[..., Any]
M = TypeVar("M", bound=BaseModel)
REF = "#/components/schemas/{model}"
RETRY_AFTER: Schema = {"$ref": "#/components/headers/RetryAfter"}
STRING: Schema = {"type": "string"}
# Deeper bodies are refused before anything walks them: json.loads, pydantic and our own
# checks recurse, and a body nested a few hundred deep ended in RecursionError (a 500 and
# a traceback per request). Our bodies need 3 levels and a few for `metadata`.
MAX_JSON_DEPTH = 32
# A JSON string (one left open runs to the end, so each byte is scanned once) or a bracket.
_JSON_TOKEN = re.compile(rb'(?s)"(?:[^"\\]|\\.)*+\\?(?:"|\Z)|[][{}]')


@dataclass(frozen=True)
class Reply:
    """One documented answer: a JSON model, other content (bytes), or nothing. `also` names
    other media types the same answer is rendered in when the request asks for them (the
    usage report's CSV), documented as text."""

    description: str
    model: type[BaseModel] | None = None
    media_type: str | None = None
    also: tuple[str, ...] = ()
    headers: Mapping[str, Schema] = field(default_factory=dict)
    links: Mapping[str, Schema] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """A header or path parameter (queries are models)."""

    where: str
    name: str
    schema: Schema
    description: str
    required: bool = False


@dataclass(frozen=True)
class Route:
    endpoint: str
    method: str
    path: str
    tag: str
    summary: str
    replies: Mapping[int, Reply]
    errors: tuple[type[DomainError], ...]
    query: type[BaseModel] | None
    body: type[BaseModel] | None
    params: tuple[Param, ...]
    security: tuple[str, ...]


ROUTES: list[Route] = []
# Answers any route may give: authenticated routes add 401, 429 and 503.
INTERNAL_ERROR = Reply("Something went wrong on our side.", ErrorBody)
PAYLOAD_TOO_LARGE = Reply("The body is over the size limit.", ErrorBody)
RATE_LIMITED = Reply(
    "Too many requests for this key.", ErrorBody, headers={"Retry-After": RETRY_AFTER}
)
UNAVAILABLE = Reply("The database is unavailable.", ErrorBody, headers={"Retry-After": RETRY_AFTER})


def _invalid(error: ValidationError, prefix: str = "") -> InvalidInput:
    """A pydantic error as `invalid_input`, naming each bad field (a name cut short: a
    metadata key, say, may be long)."""
    fields = {
        prefix + (".".join(shorten(str(part)) for part in problem["loc"]) or "body"): _said(problem)
        for problem in error.errors()
    }
    return InvalidInput("Invalid " + ", ".join(sorted(fields)) + ".", fields=fields)


def _said(problem: Mapping[str, Any]) -> str:
    """pydantic's message, without the "Value error, " it puts before our validators' own."""
    if problem["type"] == "value_error":
        return str(problem.get("ctx", {}).get("error", problem["msg"]))
    return problem["msg"]


def parse_query(model: type[M]) -> M:
    """The query string as `model`; empty values count as absent, NUL is refused."""
    values = {name: value for name, value in request.args.items() if value != ""}
    for name, value in values.items():
        if "\x00" in value:
            raise InvalidInput(f"`{name}` contains a NUL character.", fields={name: "contains NUL"})
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise _invalid(exc) from None


def _refuse_deep_json(data: bytes) -> None:
    """`InvalidInput` if `data` nests arrays and objects deeper than MAX_JSON_DEPTH."""
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return  # too few brackets to be too deep: no need to scan
    depth = 0
    for token in _JSON_TOKEN.finditer(data):
        bracket = token.group()
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidInput(
                    f"The body nests deeper than {MAX_JSON_DEPTH} levels.",
                    fields={"body": f"nested deeper than {MAX_JSON_DEPTH} levels"},
                )
        elif bracket in (b"]", b"}"):
            depth -= 1


def parse_body(model: type[M]) -> M:
    _refuse_deep_json(request.get_data())
    try:
        return model.model_validate(json_body())
    except ValidationError as exc:
        raise _invalid(exc) from None


def render(
    model: BaseModel, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    response = jsonify(model.model_dump(mode="json"))
    response.status_code = status
    response.headers.update(headers or {})
    return response


def route(
    bp: Blueprint,
    method: str,
    rule: str,
    *,
    summary: str,
    replies: Mapping[int, Reply],
    errors: Iterable[type[DomainError]] = (),
    query: type[BaseModel] | None = None,
    body: type[BaseModel] | None = None,
    parse: bool = True,  # False: the view parses `body` itself (after a signature, a key)
    params: Iterable[Param] = (),
    security: Iterable[str] = ("bearer",),
    endpoint: str | None = None,
) -> Callable[[View], View]:
    """Register a view under `rule` and declare its contract.

    The view gets `query=` and `body=` already validated (unless `parse` is False); it
    returns a model (rendered with the route's one 2xx
    status), or a `Response`.
    """
    success = [status for status in replies if 200 <= status < 300]

    def register(view: View) -> View:
        name = endpoint or view.__name__

        @functools.wraps(view)
        def handle(**kwargs: Any) -> Any:
            if body is not None:
                # The whole body before the view's database work: a client slow to send it
                # holds its own connection only, not one of the database pool's.
                request.get_data()
            if query is not None:
                kwargs["query"] = parse_query(query)
            if body is not None and parse:
                kwargs["body"] = parse_body(body)
            answer = view(**kwargs)
            return render(answer, success[0]) if isinstance(answer, BaseModel) else answer

        bp.add_url_rule(rule, name, handle, methods=[method])
        path = (bp.url_prefix or "") + re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule)
        path_params = tuple(
            Param("path", part, {"type": "string", "format": "uuid"}, f"The {part[:-3]}'s id.")
            for part in re.findall(r"{([a-z_]+)}", path)
        )
        ROUTES.append(
            Route(
                endpoint=f"{bp.name}.{name}",
                method=method.lower(),
                path=path,
                tag=bp.name,
                summary=summary,
                replies=replies,
                errors=tuple(errors),
                query=query,
                body=body,
                params=path_params + tuple(params),
                security=tuple(security),
            )
        )
        return handle

    return register


# ---- the document ------------------------------------------------------------------------


def _nullable_dropped(schema: Schema) -> Schema:
    """A query parameter is absent rather than null: keep the non-null branch."""
    branches = schema.get("anyOf")
    if branches and {"type": "null"} in branches and len(branches) == 2:
        kept = next(branch for branch in branches if branch != {"type": "null"})
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept}
    return schema


def _error_schema(errors: list[type[DomainError]]) -> Schema:
    bodies = [
        {
            "type": "object",
            "required": ["error"],
            "additionalProperties": False,
            "properties": {"error": {"$ref": REF.format(model=error.Detail.__name__)}},
        }
        for error in errors
    ]
    return bodies[0] if len(bodies) == 1 else {"oneOf": bodies}


def _json(description: str, schema: Schema, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _reply(reply: Reply, refs: Mapping[type[BaseModel], Schema]) -> Schema:
    extra: Schema = {}
    if reply.headers:
        extra["headers"] = dict(reply.headers)
    if reply.links:
        extra["links"] = dict(reply.links)
    if reply.model is not None:
        answer = _json(reply.description, refs[reply.model], **extra)
        for media_type in reply.also:
            answer["content"][media_type] = {"schema": STRING}
        return answer
    if reply.media_type is not None:
        return {"description": reply.description, "content": {reply.media_type: {}}, **extra}
    return {"description": reply.description, **extra}


def _operation(route: Route, refs: Mapping[type[BaseModel], Schema], defs: Schema) -> Schema:
    replies: dict[int, Reply] = {500: INTERNAL_ERROR}
    if "bearer" in route.security:
        replies |= {429: RATE_LIMITED, 503: UNAVAILABLE}
    if route.body is not None:
        replies[413] = PAYLOAD_TOO_LARGE
    replies |= dict(route.replies)
    responses = {str(status): _reply(reply, refs) for status, reply in replies.items()}
    by_status: dict[int, list[type[DomainError]]] = defaultdict(list)
    errors: tuple[type[DomainError], ...] = route.errors
    if "bearer" in route.security:
        errors = (*errors, Unauthorized)
    for error in errors:
        by_status[error.http_status].append(error)
    for status, grouped in by_status.items():
        description = "; ".join(error.description for error in grouped)
        responses[str(status)] = _json(description, _error_schema(grouped))
    parameters = [
        {
            "name": param.name,
            "in": param.where,
            "required": param.where == "path" or param.required,
            "description": param.description,
            "schema": param.schema,
        }
        for param in route.params
    ]
    if route.query is not None:
        query = defs[route.query.__name__]
        required = set(query.get("required", []))
        for name, schema in query["properties"].items():
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "description": schema.get("description", ""),
                    "schema": _nullable_dropped(schema),
                    **({"deprecated": True} if schema.get("deprecated") else {}),
                }
            )
    operation: Schema = {
        "operationId": route.endpoint,
        "tags": [route.tag],
        "summary": route.summary,
        "security": [{scheme: []} for scheme in route.security],
        "responses": dict(sorted(responses.items())),
    }
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[route.body]}},
        }
    return operation


def _models(routes: list[Route]) -> tuple[dict[type[BaseModel], Schema], Schema]:
    """Every model the routes name, as components; returns the refs and the definitions."""
    used: dict[type[BaseModel], Literal["validation", "serialization"]] = {
        ErrorBody: "serialization"
    }
    for each in routes:
        for reply in each.replies.values():
            if reply.model is not None:
                used.setdefault(reply.model, "serialization")
        for model in (each.body, each.query):
            if model is not None:
                used.setdefault(model, "validation")
        errors: tuple[type[DomainError], ...] = (*each.errors, Unauthorized)
        for error in errors:
            used.setdefault(error.Detail, "serialization")
    keys, schema = models_json_schema(list(used.items()), ref_template=REF)
    refs = {model: keys[(model, mode)] for model, mode in used.items()}
    return refs, schema.get("$defs", {})


@functools.cache
def document() -> Schema:
    """The OpenAPI document (built once per process, after every route registered)."""
    refs, defs = _models(ROUTES)
    paths: dict[str, Schema] = defaultdict(dict)
    for each in ROUTES:
        paths[each.path][each.method] = _operation(each, refs, defs)
    for each in ROUTES:
        if each.query is not None:
            defs.pop(each.query.__name__, None)
    tags = list(dict.fromkeys(each.tag for each in ROUTES))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Naive Video API",
            "version": "1",
            "description": (
                "Asynchronous video generation: submit a job, poll it, fetch the video. "
                "Every `/v1` route but fal's webhook and the operator API (`/v1/admin`, "
                "the operator token) needs `Authorization: Bearer nv_sk_…`; each is "
                "rate limited per key (`X-RateLimit-*` headers; 429 `rate_limited` with "
                "`Retry-After`). Errors have one shape: "
                '`{"error": {"code", "message", …}}`.'
            ),
        },
        "tags": [{"name": name} for name in tags],
        "paths": dict(paths),
        "components": {
            "schemas": defs,
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
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The operator token (`ADMIN_TOKEN`) of the admin API.",
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
