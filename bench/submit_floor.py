"""The durable-submit floor for bench.submit_throughput, served by the same gunicorn command
line as the API (`gunicorn … bench.submit_floor:app`, DATABASE_URL, CELERY_BROKER_URL and
CELERY_QUEUE as the API reads them).

POST /v1/video/generate does the least a submit must do to be durable, and nothing else:
parse the JSON body, look up the hashed API key, then one transaction that locks the
account, inserts the job, its `job.queued` event (the outbox every visible change writes
in its transaction: the job's columns as JSON) and its credit hold if the account can
afford it (the same conditional INSERT … SELECT as the product), commit, one LPUSH of a
Celery message for the job, and a small JSON 202. Plain psycopg with statements it prepares on the
server, a pool of connections, one Redis client: no ORM, no validation against the
model's schema, no pricing, no rate limit, no idempotency, no logs, no metrics.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import queue
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import psycopg
import redis
from flask import Flask, Response, jsonify, request
from psycopg.types.json import Jsonb

ESTIMATE_UNITS = 350  # the bench's model and duration: 3.5 credits
DEADLINE = timedelta(minutes=10)

DSN = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
QUEUE = os.environ.get("CELERY_QUEUE", "celery")
broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()

ACCOUNT_OF_KEY = "SELECT account_id FROM api_keys WHERE key_hash = %s AND revoked_at IS NULL"
LOCK_ACCOUNT = "SELECT id FROM accounts WHERE id = %s FOR UPDATE"
INSERT_JOB = (
    "INSERT INTO jobs (id, account_id, type, model, input, metadata, status, progress,"
    " provider_logs, provider, poll_count, estimated_seconds, estimated_credits, created_at,"
    " updated_at, deadline_at, due_at, event_seq)"
    " VALUES (%s, %s, 'video_generation', %s, %s, '{}', 'queued', 0, '[]', 'simulator', 0,"
    " 60, %s, %s, %s, %s, %s, 1)"
)
INSERT_EVENT = (
    "INSERT INTO job_events (job_id, account_id, seq, type, created_at, data)"
    " VALUES (%s, %s, 1, 'job.queued', %s, %s)"
)
INSERT_HOLD = (
    "INSERT INTO ledger_entries (id, account_id, job_id, kind, amount, created_at)"
    " SELECT %(id)s, %(account)s, %(job)s, 'hold', %(amount)s, %(at)s"
    " WHERE (SELECT coalesce(sum(CASE kind WHEN 'hold' THEN -amount WHEN 'capture' THEN 0"
    " ELSE amount END), 0) FROM ledger_entries WHERE account_id = %(account)s) >= %(amount)s"
    " RETURNING id"
)

app = Flask(__name__)


@contextmanager
def connection() -> Iterator[psycopg.Connection]:
    conn = idle.get_nowait() if not idle.empty() else psycopg.connect(DSN, autocommit=True)
    try:
        yield conn
    finally:
        idle.put(conn)


def message(job_id: str) -> str:
    """A Celery (protocol 2) message for `naive.submit_job`, as kombu's Redis transport
    stores it."""
    body = base64.b64encode(json.dumps([[job_id], {}, {}]).encode()).decode()
    return json.dumps(
        {
            "body": body,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"lang": "py", "task": "naive.submit_job", "id": job_id, "retries": 0},
            "properties": {
                "correlation_id": job_id,
                "delivery_mode": 2,
                "delivery_info": {"exchange": "", "routing_key": QUEUE},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": str(uuid.uuid4()),
            },
        }
    )


def refused(status: int, code: str) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": code}}), status


@app.post("/v1/video/generate")
def generate() -> tuple[Response, int]:
    body = request.get_json(force=True, silent=True) or {}
    _, _, key = request.headers.get("Authorization", "").partition(" ")
    key_hash = hashlib.sha256(key.encode()).hexdigest()
    job_id, now = uuid.uuid4(), datetime.now(UTC)
    with connection() as conn, conn.transaction():
        found = conn.execute(ACCOUNT_OF_KEY, (key_hash,)).fetchone()
        if found is None:
            return refused(401, "unauthorized")
        account = found[0]
        conn.execute(LOCK_ACCOUNT, (account,))
        model, model_input = body.get("model"), body.get("input") or {}
        conn.execute(
            INSERT_JOB,
            (job_id, account, model, Jsonb(model_input),
             ESTIMATE_UNITS, now, now, now + DEADLINE, now),
        )  # fmt: skip
        view = {
            "id": str(job_id),
            "status": "queued",
            "model": model,
            "input": model_input,
            "estimated_credits": ESTIMATE_UNITS / 100,
            "created_at": now.isoformat(),
        }
        conn.execute(INSERT_EVENT, (job_id, account, now, Jsonb(view)))  # fmt: skip
        hold = {"id": uuid.uuid4(), "account": account, "job": job_id, "amount": ESTIMATE_UNITS}
        held = conn.execute(INSERT_HOLD, {**hold, "at": now}).fetchone() is not None
        if not held:
            raise psycopg.Rollback()
    if not held:
        return refused(402, "insufficient_credits")
    broker.lpush(QUEUE, message(str(job_id)))
    return jsonify({"job_id": str(job_id), "status": "queued", "model": body.get("model")}), 202


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
