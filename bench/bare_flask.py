"""The floor for bench.submit_throughput: a bare Flask app with one JSON endpoint, served
by the same gunicorn command line as the API (`gunicorn … bench.bare_flask:app`).

It parses the request's JSON body and answers a small JSON document, as the API does,
and nothing else: no database, no broker, no authentication, no rate limit, no metrics.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request

app = Flask(__name__)


@app.post("/echo")
def echo() -> tuple[Response, int]:
    body = request.get_json(force=True, silent=True) or {}
    return jsonify({"ok": True, "model": body.get("model"), "status": "queued"}), 202


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
