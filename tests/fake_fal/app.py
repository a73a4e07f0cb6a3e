"""The fake's HTTP routes: fal's queue API, files, JWKS, platform API, and `/_fake` controls."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request, send_file
from werkzeug.exceptions import HTTPException

from shared.catalog import get_model
from shared.errors import InvalidInput, InvalidModel
from shared.providers.base import ProviderError
from tests.fake_fal.faults import DirectiveError, Directives, parse_directives
from tests.fake_fal.platform import Platform, PlatformError, split_ids
from tests.fake_fal.queue import FakeQueue, FalRequest
from tests.fake_fal.responses import (
    dripped,
    fault_response,
    json_error,
    json_response,
    validation_error,
)
from tests.fake_fal.validation import argument_problems, with_defaults
from tests.fake_fal.webhooks import WebhookSigner

FILE_NAME = re.compile(r"(?P<id>[0-9a-f-]{36})\.mp4")


Refusal = Callable[[], Response | None]


class Window:
    """A span of time during which calls are refused with one HTTP status."""

    def __init__(self) -> None:
        self._until = 0.0
        self._status = 503
        self._lock = threading.Lock()

    def open(self, seconds: float, status: int = 503) -> None:
        with self._lock:
            self._until, self._status = time.monotonic() + seconds, status

    def status(self) -> int | None:
        """The status to refuse with now, or None outside the window."""
        with self._lock:
            return self._status if time.monotonic() < self._until else None


def create_app(queue: FakeQueue, platform: Platform, signer: WebhookSigner, key: str) -> Flask:
    """The Flask app of a fake fal that accepts `Authorization: Key <key>`."""
    app = Flask(__name__)
    outage, platform_outage = Window(), Window()

    def refusal(window: Window) -> Response | None:
        status = window.status()
        if status is not None:
            return json_error(status)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Key {key}".encode()):
            return json_error(401)
        return None

    @app.after_request
    def add_request_id(response: Response) -> Response:
        if not g.get("ingress_fault"):
            response.headers.setdefault(
                "x-fal-request-id", g.get("request_id") or str(uuid.uuid4())
            )
        return response

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return json_error(error.code or 500, error.description)

    _queue_routes(app, queue, lambda: refusal(outage))
    _platform_routes(app, platform, lambda: refusal(platform_outage))
    _control_routes(app, queue, signer, outage, platform_outage)
    return app


def _queue_routes(app: Flask, queue: FakeQueue, refusal: Refusal) -> None:
    def find(app_id: str, request_id: str) -> FalRequest | None:
        g.request_id = request_id
        found = queue.get(request_id)
        if found is None or app_id not in (found.endpoint, _owner_alias(found.endpoint)):
            return None
        return found

    def fault(directives: Directives, phase: str, call_number: int) -> Response | None:
        chosen = directives.faults.get(phase)
        if chosen is None or not chosen.applies(call_number):
            return None
        g.ingress_fault = chosen.ingress
        return fault_response(chosen)

    @app.post("/<path:endpoint_id>")
    def submit(endpoint_id: str) -> Response:
        if (refused := refusal()) is not None:
            return refused
        body = request.get_data()
        arguments = request.get_json(force=True, silent=True)
        if not isinstance(arguments, dict):
            problem = {"loc": ["body"], "msg": "body must be a JSON object", "type": "value_error"}
            return validation_error([problem])
        model_arguments, directives = dict(arguments), Directives()
        if isinstance(arguments.get("prompt"), str):
            try:
                model_arguments["prompt"], directives = parse_directives(arguments["prompt"])
            except DirectiveError as exc:
                return json_error(400, str(exc))
        body_key = hashlib.sha256(endpoint_id.encode() + b"\n" + body).hexdigest()
        if (faulted := fault(directives, "submit", queue.count_submit(body_key))) is not None:
            return faulted
        try:
            model = get_model(endpoint_id)
        except (InvalidModel, InvalidInput):
            return json_error(404, f"Application {endpoint_id!r} not found")
        problems = argument_problems(model, model_arguments)
        if problems:
            return validation_error(problems)
        try:
            start_timeout = _optional_float(request.headers.get("X-Fal-Request-Timeout"))
        except ValueError:
            return json_error(400, "X-Fal-Request-Timeout must be a number of seconds")
        webhook_url = request.args.get("fal_webhook")
        try:
            submitted = queue.submit(
                endpoint_id,
                model,
                arguments,
                with_defaults(model, model_arguments),
                directives,
                webhook_url=webhook_url,
                priority=request.headers.get("X-Fal-Queue-Priority"),
                hint=request.headers.get("X-Fal-Runner-Hint"),
                start_timeout=start_timeout,
            )
        except ProviderError as exc:  # the simulator refused it (`[sim reject]`)
            problem = {"loc": ["body", "prompt"], "msg": str(exc), "type": "value_error"}
            return validation_error([problem])
        g.request_id = submitted.request_id
        time.sleep(directives.submit_delay)  # its callback may go out meanwhile
        answer: dict[str, Any] = {
            "request_id": submitted.request_id,
            "status": "IN_QUEUE",
            "queue_position": queue.snapshot(submitted).queue_position,
            **_urls(queue, submitted),
        }
        if webhook_url:
            answer["gateway_request_id"] = submitted.request_id
        return json_response(200, answer)

    @app.get("/<path:app_id>/requests/<request_id>/status")
    def status(app_id: str, request_id: str) -> Response:
        if (refused := refusal()) is not None:
            return refused
        found = find(app_id, request_id)
        if found is None:
            return json_error(404, "Request not found")
        if (faulted := fault(found.directives, "status", found.count("status"))) is not None:
            return faulted
        time.sleep(found.directives.status_delay)
        snapshot = queue.snapshot(found)
        with_logs = request.args.get("logs", "0").lower() in ("1", "true")
        logs = list(snapshot.logs) if with_logs else None
        body: dict[str, Any] = {"request_id": found.request_id, **_urls(queue, found)}
        if snapshot.state == "queued":
            body.update(status="IN_QUEUE", queue_position=snapshot.queue_position)
            return dripped(json_response(202, body), found.directives.status_drip)
        if snapshot.outcome is None:
            body.update(status="IN_PROGRESS", logs=logs)
            return dripped(json_response(202, body), found.directives.status_drip)
        outcome = snapshot.outcome
        body.update(status="COMPLETED", logs=logs)
        if outcome.inference_time is not None:
            body["metrics"] = {"inference_time": outcome.inference_time}
        if outcome.error is not None:
            body.update(error=outcome.error, error_type=outcome.error_type)
        return dripped(json_response(200, body), found.directives.status_drip)

    @app.get("/<path:app_id>/requests/<request_id>")
    def result(app_id: str, request_id: str) -> Response:
        if (refused := refusal()) is not None:
            return refused
        found = find(app_id, request_id)
        if found is None:
            return json_error(404, "Request not found")
        if (faulted := fault(found.directives, "result", found.count("result"))) is not None:
            return faulted
        outcome = queue.snapshot(found).outcome
        if outcome is None:
            return json_error(400, "Request is still in progress")
        headers = dict(outcome.headers)
        if outcome.error_type is not None:
            headers["X-Fal-Error-Type"] = outcome.error_type
        return json_response(outcome.http_status, outcome.body, headers)

    @app.put("/<path:app_id>/requests/<request_id>/cancel")
    def cancel(app_id: str, request_id: str) -> Response:
        if (refused := refusal()) is not None:
            return refused
        found = find(app_id, request_id)
        if found is None:
            return json_response(404, {"status": "NOT_FOUND"})
        found.count("cancel")
        if queue.cancel(found):
            return json_response(202, {"status": "CANCELLATION_REQUESTED"})
        return json_response(400, {"status": "ALREADY_COMPLETED"})

    @app.get("/files/<name>")
    def video_file(name: str) -> Response:
        match = FILE_NAME.fullmatch(name)
        found = queue.get(match["id"]) if match else None
        outcome = found.outcome if found else None
        if outcome is None or outcome.video_file is None or found.directives.file_fault == "404":
            return json_error(404, "File not found")
        if found.directives.file_fault == "html":
            return Response("<html><body>Sign in to continue</body></html>", mimetype="text/html")
        return send_file(
            outcome.video_file, mimetype="video/mp4", download_name=name, conditional=True
        )


def _platform_routes(app: Flask, platform: Platform, refusal: Refusal) -> None:
    @app.get("/v1/models")
    def models() -> Response:
        if (refused := refusal()) is not None:
            return refused
        try:
            page = platform.models(
                endpoint_ids=split_ids(request.args.getlist("endpoint_id")),
                query=request.args.get("q"),
                category=request.args.get("category"),
                limit=request.args.get("limit"),
                cursor=request.args.get("cursor"),
            )
        except PlatformError as exc:
            return json_error(exc.status, exc.detail)
        return json_response(200, page)

    @app.get("/v1/models/pricing")
    def pricing() -> Response:
        if (refused := refusal()) is not None:
            return refused
        try:
            prices = platform.pricing(split_ids(request.args.getlist("endpoint_id")))
        except PlatformError as exc:
            return json_error(exc.status, exc.detail)
        return json_response(200, prices)


def _control_routes(
    app: Flask, queue: FakeQueue, signer: WebhookSigner, outage: Window, platform_outage: Window
) -> None:
    jwks_stall, jwks_fetches = Window(), Counter[str]()
    lock = threading.Lock()

    @app.get("/.well-known/jwks.json")
    def jwks() -> Response:
        with lock:
            jwks_fetches["fetches"] += 1
        while jwks_stall.status() is not None:
            time.sleep(0.05)  # a stalling JWKS host: nothing is sent until the stall ends
        return json_response(200, signer.jwks())

    @app.post("/_fake/jwks-stall")
    def stall_jwks() -> Response:
        jwks_stall.open(float(request.get_json(force=True)["seconds"]))
        return json_response(200, {"ok": True})

    @app.post("/_fake/outage")
    def start_outage() -> Response:
        options = request.get_json(force=True)
        outage.open(float(options["seconds"]), int(options.get("status", 503)))
        return json_response(200, {"ok": True})

    @app.post("/_fake/platform-down")
    def start_platform_outage() -> Response:
        platform_outage.open(float(request.get_json(force=True)["seconds"]))
        return json_response(200, {"ok": True})

    @app.post("/_fake/rotate-key")
    def rotate_key() -> Response:
        return json_response(200, {"kid": signer.rotate()})

    @app.get("/_fake/stats")
    def stats() -> Response:
        return json_response(
            200,
            {
                "requests": {r.request_id: r.stats() for r in queue.all()},
                "jwks_fetches": jwks_fetches["fetches"],
            },
        )


def _owner_alias(endpoint_id: str) -> str:
    return "/".join(endpoint_id.split("/")[:2])


def _urls(queue: FakeQueue, found: FalRequest) -> dict[str, str]:
    base = f"{queue.base_url}/{_owner_alias(found.endpoint)}/requests/{found.request_id}"
    return {"status_url": f"{base}/status", "response_url": base, "cancel_url": f"{base}/cancel"}


def _optional_float(value: str | None) -> float | None:
    return None if value is None else float(value)
