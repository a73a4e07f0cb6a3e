"""The durable-submit floor for bench.submit_throughput, served by the same gunicorn command
line as the API (`gunicorn … bench.submit_floor:app`, DATABASE_URL, CELERY_BROKER_URL and
CELERY_QUEUE as the API reads them).

POST /v1/video/generate does the least a submit must do to be durable, and nothing else:
parse the JSON body, look up the hashed API key, then one transaction that locks the
account, inserts the job, its `job.queued` event (the outbox every visible change writes
in its transaction: the job's columns as JSON) and its credit hold if the account can
afford it (the same conditional INSERT … SELECT as the product), the three in one statement
(the job and the event in its WITH clause, as the product writes them; with
FLOOR_WRITES=apart, each alone: the floor as issue 10 first set it), commit, one LPUSH of a
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
    " VALUES (%(job)s, %(account)s, 'video_generation', %(model)s, %(input)s, '{}', 'queued', 0,"
    " '[]', 'simulator', 0, 60, %(amount)s, %(at)s, %(at)s, %(deadline)s, %(at)s, 1)"
)
INSERT_EVENT = (
    "INSERT INTO job_events (job_id, account_id, seq, type, created_at, data)"
    " VALUES (%(job)s, %(account)s, 1, 'job.queued', %(at)s, %(view)s)"
)
INSERT_HOLD = (
    "INSERT INTO ledger_entries (id, account_id, job_id, kind, amount, created_at)"
    " SELECT %(id)s, %(account)s, %(job)s, 'hold', %(amount)s, %(at)s"
    " WHERE (SELECT coalesce(sum(CASE kind WHEN 'hold' THEN -amount WHEN 'capture' THEN 0"
    " ELSE amount END), 0) FROM ledger_entries WHERE account_id = %(account)s) >= %(amount)s"
    " RETURNING id"
)
WRITE_ALL = f"WITH job AS ({INSERT_JOB}), event AS ({INSERT_EVENT}) {INSERT_HOLD}"
APART = os.environ.get("FLOOR_WRITES") == "apart"

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
        view = {
            "id": str(job_id),
            "status": "queued",
            "model": model,
            "input": model_input,
            "estimated_credits": ESTIMATE_UNITS / 100,
            "created_at": now.isoformat(),
        }
        write = {"job": job_id, "account": account, "model": model, "input": Jsonb(model_input),
                 "amount": ESTIMATE_UNITS, "at": now, "deadline": now + DEADLINE,
                 "view": Jsonb(view), "id": uuid.uuid4()}  # fmt: skip
        if APART:
            conn.execute(INSERT_JOB, write)
            conn.execute(INSERT_EVENT, write)
        held = conn.execute(INSERT_HOLD if APART else WRITE_ALL, write).fetchone() is not None
        if not held:
            raise psycopg.Rollback()
    if not held:
        return refused(402, "insufficient_credits")
    broker.lpush(QUEUE, message(str(job_id)))
    return jsonify({"job_id": str(job_id), "status": "queued", "model": body.get("model")}), 202


@app.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})
