"""One error shape for every failure: `{"error": {"code", "message", ...}}`, never an HTML page."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify, request
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from shared.errors import DomainError, error_body

log = logging.getLogger(__name__)

HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    414: "uri_too_long",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    417: "expectation_failed",
    429: "rate_limited",
    431: "header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
}


def error_response(status: int, code: str, message: str, /, **extra: object) -> Response:
    response = jsonify(error_body(code, message, **extra))
    response.status_code = status
    return response


def init_app(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(error: DomainError) -> Response:
        response = jsonify({"error": error.to_dict()})
        response.status_code = error.http_status
        return response

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        status = error.code or 500
        if status == 404:  # a path no route takes (a missing row is the domain's NotFound)
            message = f"No route {request.method} {request.path}; every route is in /openapi.json."
        elif status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            message = f"The request body is over the limit of {limit} bytes."
        else:
            message = error.description or ""
        response = error_response(status, HTTP_CODES.get(status, "http_error"), message)
        for name, value in error.get_headers():  # e.g. Content-Range of a 416, Allow of a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(OperationalError)
    def _database_down(error: OperationalError) -> Response:
        log.error("database unavailable: %s", error)
        response = error_response(503, "unavailable", "The database is unavailable; retry soon.")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Something went wrong on our side.")
