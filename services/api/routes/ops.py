"""Operations: liveness, readiness and this document (metrics have a port of their own:
services/api/metrics_listener.py).

/readyz checks the database only: the API keeps accepting jobs while the broker is
down (the dispatcher sends their messages later), so a broker outage must not take the
API out of its load balancer.
"""

from __future__ import annotations

from typing import Any, Literal

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel, ConfigDict, Field

from services.api import context, contract
from services.api.contract import Reply, route

bp = Blueprint("ops", __name__)
PUBLIC = ()  # operations need no API key


class Alive(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ready"] = "ready"
    media_free_bytes: int | None = Field(
        description="Free bytes in media storage (null for a bucket): a full disk fails "
        "every ingest, while the API itself still serves."
    )


class OpenApiDocument(BaseModel):
    """This document (described by the OpenAPI 3.1 specification itself)."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict[str, Any]
    paths: dict[str, Any]


@route(
    bp,
    "GET",
    "/healthz",
    summary="Liveness",
    replies={200: Reply("Alive.", Alive)},
    security=PUBLIC,
)
def healthz() -> Alive:
    return Alive()


@route(
    bp,
    "GET",
    "/readyz",
    summary="Readiness (the database), with the media storage's free space",
    replies={200: Reply("Ready.", Ready), 503: contract.UNAVAILABLE},
    security=PUBLIC,
)
def readyz() -> Ready:
    runtime = context.runtime()
    runtime.db.ping()
    return Ready(media_free_bytes=runtime.storage.free_bytes())


@route(
    bp,
    "GET",
    "/openapi.json",
    summary="This document",
    replies={200: Reply("OpenAPI 3.1.", OpenApiDocument)},
    security=PUBLIC,
    endpoint="openapi_document",
)
def openapi_document() -> Response:
    return jsonify(contract.document())
