"""Prometheus metrics, shared by the API and the worker.

Counters and histograms live in each process; under gunicorn and Celery prefork they
go through prometheus-client's multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`, read when
prometheus-client is imported), so a scrape counts every process once. What only the
database knows (jobs in flight, the oldest one's age) is read by `DatabaseCollector`,
served by the API alone (on its metrics port) and at most once per `Cached` period: queue
length cannot see countdown tasks that workers hold.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector
from sqlalchemy import event, exists, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, aliased

from shared.db import Database, utcnow
from shared.jobs.models import Job, JobEvent
from shared.jobs.status import TERMINAL, JobStatus
from shared.webhooks.delivery import Attempt
from shared.webhooks.models import DeliveryStatus, WebhookDelivery

DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

HTTP_REQUESTS = Counter(
    "naive_http_requests", "HTTP requests answered", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "naive_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
JOBS_SUBMITTED = Counter("naive_jobs_submitted", "Jobs accepted by the API", ["model"])
JOBS_FINISHED = Counter(
    "naive_jobs_finished", "Jobs that reached a final state", ["model", "status"]
)
QUEUE_WAIT = Histogram(
    "naive_job_queue_wait_seconds",
    "From submit to the provider taking the job",
    ["model"],
    buckets=DURATION_BUCKETS,
)
PROVIDER_TIME = Histogram(
    "naive_job_provider_seconds",
    "From the provider taking the job to its result",
    ["model"],
    buckets=DURATION_BUCKETS,
)
SETTLE_TO_INGEST = Histogram(
    "naive_job_settle_to_ingest_seconds",
    "From the provider's result to the job completed",
    ["model"],
    buckets=DURATION_BUCKETS,
)
SUBMIT_TO_COMPLETED = Histogram(
    "naive_job_submit_to_completed_seconds",
    "From submit to completed",
    ["model"],
    buckets=DURATION_BUCKETS,
)
POLLS_PER_JOB = Histogram(
    "naive_job_polls",
    "Provider status calls a finished job needed",
    ["model"],
    buckets=(0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89),
)
PROVIDER_CALLS = Counter(
    "naive_provider_calls", "Calls to the provider", ["provider", "operation", "outcome"]
)
CREDITS = Counter("naive_credits", "Credits moved through the ledger", ["kind"])
INGEST_FAILURES = Counter("naive_ingest_failures", "Ingest attempts that failed", ["final"])
WEBHOOKS = Counter("naive_webhooks", "Provider callbacks received", ["outcome"])
DISPATCHED = Counter(
    "naive_dispatched_steps", "Steps the dispatcher carried out for overdue jobs", ["step"]
)
BUDGET_REFUSALS = Counter(
    "naive_budget_refusals", "Requests refused as over a budget", ["scope", "period"]
)
DB_STATEMENTS = Counter("naive_db_statements", "SQL statements sent to the database", ["verb"])
SQL_VERBS = frozenset({"select", "insert", "update", "delete"})
DB_TRANSACTIONS = Counter("naive_db_transactions", "Database transactions ended", ["outcome"])
WEBHOOK_DELIVERIES = Counter(
    "naive_webhook_deliveries",
    "Customer webhook delivery attempts by outcome: delivered, retried, failed (given up)",
    ["outcome"],
)
# Labelled, as every metric here is: in multiprocess mode an unlabelled one writes its file
# at import, before the server has made PROMETHEUS_MULTIPROC_DIR.
WEBHOOK_DELIVERY_LAG = Histogram(
    "naive_webhook_delivery_lag_seconds",
    "From a job event to its webhook delivered",
    ["event"],
    buckets=DURATION_BUCKETS,
)
# What a delivery's status after an attempt says the attempt came to (any other status,
# one added later, is not counted rather than failing the task).
_ATTEMPT_OUTCOMES: dict[str, str] = {
    DeliveryStatus.DELIVERED: "delivered",
    DeliveryStatus.PENDING: "retried",
    DeliveryStatus.FAILED: "failed",
}


_Child = Any  # a metric's child for one set of label values
_children: dict[tuple[object, tuple[str, ...]], _Child] = {}
_MAX_CHILDREN = 4096  # label sets are few; past this, look them up each time


def child(metric: Counter | Histogram, *values: str) -> _Child:
    """`metric.labels(*values)`, remembered: the hot paths (every request, statement and
    submit) count with the same few label sets, and prometheus-client's lookup (checks,
    a lock) cost more than the count itself."""
    key = (metric, values)
    found = _children.get(key)
    if found is None:
        found = metric.labels(*values)
        if len(_children) < _MAX_CHILDREN:
            _children[key] = found
    return found


_statement_counters: dict[str, _Child] = {}


def _count_statement(
    _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any
) -> tuple[str, Any]:
    counter = _statement_counters.get(statement)
    if counter is None:
        verb = statement.lstrip()[:6].lower()
        counter = child(DB_STATEMENTS, verb if verb in SQL_VERBS else "other")
        if len(_statement_counters) < _MAX_CHILDREN:  # prebuilt statements: a few dozen
            _statement_counters[statement] = counter
    counter.inc()
    return statement, parameters


def count_database_work(engine: Engine) -> None:
    """Count the statements and transactions this process sends: the database work per job
    is what limits throughput, and a regression shows here before it shows in latency."""
    # `retval`: the listener hands the statement on itself, so SQLAlchemy does not wrap it
    # in a function of its own that does (a call less for every statement).
    event.listen(engine, "before_cursor_execute", _count_statement, retval=True)
    event.listen(engine, "commit", lambda _: child(DB_TRANSACTIONS, "commit").inc())
    event.listen(engine, "rollback", lambda _: child(DB_TRANSACTIONS, "rollback").inc())


def registry() -> CollectorRegistry:
    """The registry a scrape reads: every process's samples in multiprocess mode."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


def reset_multiprocess_dir() -> None:
    """Empty the multiprocess folder at start: files of a previous run would count again.

    Only its files go, so the folder may be a volume's mount point."""
    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not folder:
        return
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob("*.db"):
        leftover.unlink(missing_ok=True)


def mark_process_dead(pid: int) -> None:
    """Drop a finished process's live gauges (prometheus-client's multiprocess contract)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        multiprocess.mark_process_dead(pid)


def observe_finished(job: Job) -> None:
    """Count a job that reached a final state and time its stages."""
    child(JOBS_FINISHED, job.model, job.status.public.value).inc()
    child(POLLS_PER_JOB, job.model).observe(job.poll_count)
    if job.status is not JobStatus.COMPLETED or job.completed_at is None:
        return
    child(SUBMIT_TO_COMPLETED, job.model).observe(_seconds(job.created_at, job.completed_at))
    if job.provider_completed_at is not None:
        child(SETTLE_TO_INGEST, job.model).observe(
            _seconds(job.provider_completed_at, job.completed_at)
        )
        if job.started_at is not None:
            child(PROVIDER_TIME, job.model).observe(
                _seconds(job.started_at, job.provider_completed_at)
            )


def observe_webhook_attempt(
    *, session: Session, delivery_id: uuid.UUID, attempts: int, attempt: Attempt
) -> None:
    """Count a recorded delivery attempt by what it came to, and time a delivered one from
    its event. Nothing is counted when the row moved on meanwhile (a redelivery)."""
    row = session.get(WebhookDelivery, delivery_id)  # the row just recorded: no query
    if row is None or row.attempts != attempts:
        return
    outcome = _ATTEMPT_OUTCOMES.get(row.status)
    if outcome is None or (outcome == "delivered") != attempt.delivered:
        return
    child(WEBHOOK_DELIVERIES, outcome).inc()
    if attempt.delivered:
        created = session.scalar(select(JobEvent.created_at).where(JobEvent.id == row.event_id))
        if created is not None:
            child(WEBHOOK_DELIVERY_LAG, row.event_type).observe(_seconds(_aware(created), utcnow()))


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive UTC datetimes; PostgreSQL aware ones."""
    return moment if moment.tzinfo else moment.replace(tzinfo=utcnow().tzinfo)


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


class DatabaseCollector(Collector):
    """Jobs in flight by state and the oldest one's age, read from the database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_flight = GaugeMetricFamily(
            "naive_jobs_in_flight", "Unfinished jobs by internal state", labels=["state"]
        )
        oldest = GaugeMetricFamily(
            "naive_oldest_in_flight_job_age_seconds", "Age of the oldest unfinished job"
        )
        unfinished = Job.status.notin_(TERMINAL)
        with self.db.transaction() as session:
            rows = session.execute(
                select(Job.status, func.count()).where(unfinished).group_by(Job.status)
            ).all()
            first = session.scalar(select(func.min(Job.created_at)).where(unfinished))
        counts: dict[JobStatus, int] = {status: count for status, count in rows}
        for state in JobStatus:
            if not state.is_terminal:
                in_flight.add_metric([state.value], counts.get(state, 0))
        if first is not None and first.tzinfo is None:
            first = first.replace(tzinfo=utcnow().tzinfo)
        oldest.add_metric([], _seconds(first, utcnow()) if first else 0.0)
        yield in_flight
        yield oldest


class SchedulingCollector(Collector):
    """The fair scheduler's state, read from the database: jobs waiting for a slot by
    account and by reason (`provider`: its capacity is in use; `account`: the account's own
    cap is reached), and the slots in use per provider against its capacity."""

    def __init__(self, db: Database, capacity: int | None) -> None:
        self.db = db
        self.capacity = capacity

    def collect(self) -> Iterator[GaugeMetricFamily]:
        # Imported here: the accounts slice the scheduler reads imports this module.
        from shared.jobs import admission

        waiting = GaugeMetricFamily(
            "naive_jobs_waiting",
            "Jobs waiting in our queue for a provider slot, by account and reason",
            labels=["account", "reason"],
        )
        in_use = GaugeMetricFamily(
            "naive_provider_slots_in_use", "Jobs holding a provider slot", labels=["provider"]
        )
        capacity = GaugeMetricFamily(
            "naive_provider_capacity", "PROVIDER_CONCURRENCY (absent: no limit)", labels=[]
        )
        with self.db.transaction() as session:
            for row in admission.waiting_by_account(session=session):
                waiting.add_metric([str(row.account_id), row.reason.value], row.count)
            for provider, count in admission.slots_in_use(session=session).items():
                in_use.add_metric([provider], count)
        yield waiting
        yield in_use
        if self.capacity is not None:
            capacity.add_metric([], self.capacity)
            yield capacity


class WebhookBacklogCollector(Collector):
    """The age of the oldest job event still owed to a customer: not yet fanned out to the
    subscriptions, or with a delivery due now that is not blocked behind the same job's
    earlier one. A delivery waiting out its retry backoff is not backlog (a receiver that
    is down is the customer's outage, shown by the retried and failed counts)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        oldest = GaugeMetricFamily(
            "naive_webhook_oldest_undelivered_event_age_seconds",
            "Age of the oldest job event not yet fanned out or delivered when due",
        )
        now = utcnow()
        earlier = aliased(WebhookDelivery)
        blocked = exists().where(
            earlier.subscription_id == WebhookDelivery.subscription_id,
            earlier.job_id == WebhookDelivery.job_id,
            earlier.seq < WebhookDelivery.seq,
            earlier.status == DeliveryStatus.PENDING,
        )
        with self.db.transaction() as session:
            undispatched = session.scalar(
                select(func.min(JobEvent.created_at)).where(JobEvent.dispatched_at.is_(None))
            )
            due = session.scalar(
                select(func.min(JobEvent.created_at))
                .join(WebhookDelivery, WebhookDelivery.event_id == JobEvent.id)
                .where(
                    WebhookDelivery.status == DeliveryStatus.PENDING,
                    WebhookDelivery.next_attempt_at <= now,
                    ~blocked,
                )
            )
        firsts = [_aware(moment) for moment in (undispatched, due) if moment is not None]
        oldest.add_metric([], _seconds(min(firsts), now) if firsts else 0.0)
        yield oldest


class BrokerCollector(Collector):
    """The broker's queue length (Redis `LLEN`): messages not yet taken by any worker."""

    def __init__(self, broker_url: str, queues: tuple[str, ...]) -> None:
        self.broker_url = broker_url
        self.queues = queues

    def collect(self) -> Iterator[GaugeMetricFamily]:
        depth = GaugeMetricFamily(
            "naive_broker_queue_depth", "Messages waiting in the broker", labels=["queue"]
        )
        if self.broker_url.startswith(("redis://", "rediss://")):
            client = redis.Redis.from_url(self.broker_url, socket_timeout=2)
            try:
                for queue in self.queues:
                    depth.add_metric([queue], client.llen(queue))
            except redis.RedisError:
                pass  # a broker outage shows as a missing sample, and in the API's logs
            finally:
                client.close()
        yield depth


class MediaSpaceCollector(Collector):
    """Free bytes where media is stored (a full disk fails every ingest); no sample when
    the storage cannot say (a bucket, an unreadable folder)."""

    def __init__(self, free_bytes: Callable[[], int | None]) -> None:
        self.free_bytes = free_bytes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        free = GaugeMetricFamily("naive_media_free_bytes", "Free bytes in media storage")
        value = self.free_bytes()
        if value is not None:
            free.add_metric([], value)
        yield free


class Cached(Collector):
    """Another collector's samples, read at most once per `seconds`: scrapes at any rate,
    by any number of Prometheus servers, cost the database one query per period."""

    def __init__(self, collector: Collector, seconds: float) -> None:
        self.collector = collector
        self.seconds = seconds
        self._lock = threading.Lock()
        self._read_at = float("-inf")
        self._samples: list[Metric] = []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            if time.monotonic() - self._read_at >= self.seconds:
                self._samples = list(self.collector.collect())
                self._read_at = time.monotonic()
            return list(self._samples)
