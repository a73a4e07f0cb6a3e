"""Settings, read once from the environment into one frozen object.

With no environment at all the whole pipeline runs on one machine without servers:
a SQLite file, kombu's filesystem broker and the simulator provider, all under
`NAIVE_DATA_DIR` (default `./var`). Production sets `DATABASE_URL`
(`postgresql+psycopg://…`) and `CELERY_BROKER_URL` (`redis://…`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

PROVIDERS = ("simulator", "fal")
MEDIA_STORAGES = ("local", "s3")
# While provider webhooks are on, polling is a safety net and may wait this much longer.
WEBHOOK_POLL_SLOWDOWN = 3


class ConfigError(ValueError):
    """A setting is missing or malformed; raised at start-up, never mid-request."""


@dataclass(frozen=True)
class Rate:
    """A rate limit: at most `amount` requests per window of `seconds`."""

    amount: int
    seconds: int


_RATE = re.compile(r"\s*(\d+)\s*(?:per|/)\s*(\d*)\s*(second|minute|hour|day)s?\s*")
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    celery_queue: str
    media_root: Path
    provider: str
    fal_key: str | None
    # Where fal posts completion callbacks (our POST /v1/webhooks/fal); None: polling only.
    fal_webhook_url: str | None
    fal_jwks_url: str
    fal_platform_url: str
    fal_start_timeout_seconds: float | None
    fal_priority: str | None
    catalog_ttl_seconds: float
    catalog_cache_seconds: float
    public_base_url: str | None
    secret_key: str
    # Credits: 1 credit = credit_value_usd; estimate = price × duration × markup / credit value.
    credit_value_usd: Decimal
    credit_markup: Decimal
    new_account_credits: Decimal
    # Worker pacing: poll backoff starts at poll_initial_seconds and grows to poll_max_seconds.
    poll_initial_seconds: float
    poll_max_seconds: float
    # The dispatcher (beat) runs every dispatch_interval_seconds and sends each step that
    # is overdue by more than dispatch_grace_seconds (its message was lost).
    dispatch_interval_seconds: float
    dispatch_grace_seconds: float
    # A poll due within this horizon is sent at once with its countdown; one due later is
    # parked (no message) and the dispatcher sends it once it is due within the horizon.
    # At least one dispatch interval. (With no beat running, nothing sends parked polls:
    # set it beyond every wait.)
    poll_horizon_seconds: float
    # The dispatcher sends the parked polls as batches of at most this many jobs, one
    # message each (one claim, a provider call per job, one write for their reports).
    poll_batch_size: int
    # Overrides every model's own deadline when set (operators and tests).
    job_deadline_seconds: float | None
    # How long a submit keeps retrying a provider that answers 429/5xx before giving up.
    submit_retry_seconds: float
    # How long a finished request's result is retried while the provider answers 5xx (or
    # cannot be reached) before the job fails with provider_error.
    result_retry_seconds: float
    simulator_latency_seconds: float | None
    max_request_bytes: int
    allow_private_image_urls: bool
    # Customer webhook URLs may name private and loopback addresses (a closed network, tests).
    webhook_allow_private_urls: bool
    # Seconds between a customer webhook delivery's attempts; each wait is stretched by up to
    # a fifth at random (never shortened); after the last, the delivery has failed.
    webhook_retry_schedule: tuple[float, ...]
    # A subscription whose every attempt has failed for this long is disabled (PATCH
    # `{"status": "enabled"}` turns it back on).
    webhook_disable_after_seconds: float
    # Per API key (per client address without one), as "600 per minute"; and per client
    # address for answers 401 (no key, an invented or revoked one): a tighter budget, spent
    # before any database lookup. Counted in Redis when the broker is Redis.
    rate_limit: Rate
    rate_limit_auth_failures: Rate
    # Per client address on fal's callback route (signed, so no key to count by).
    rate_limit_webhooks: Rate
    rate_limit_storage_url: str
    log_level: str
    log_json: bool
    # Each worker host serves its metrics on this port; the heartbeat file feeds liveness.
    worker_metrics_port: int | None
    worker_heartbeat_file: Path | None
    visibility_timeout_seconds: int
    # Media storage: `local` (the folder media_root) or `s3` (a bucket; see shared/media/storage).
    media_storage: str = "local"
    s3_bucket: str | None = None
    s3_prefix: str = ""
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    # The API answers GET /metrics only on the listener of this port (the Procfile's second
    # `--bind`), never on its public PORT.
    api_metrics_port: int = 9101
    # The operator token of the admin API (`/v1/admin/…`, e.g. granting credits); None: that
    # API is off (its routes answer 404).
    admin_token: str | None = field(default=None, repr=False)
    # `GET /v1/jobs/{id}/events`: a comment line this often keeps proxies from closing a quiet
    # stream; a stream ends after this long (the client resumes with `Last-Event-ID`), so no
    # request lives for ever.
    event_stream_heartbeat_seconds: float = 15
    event_stream_max_seconds: float = 300
    # Fair scheduling (shared/jobs/admission): at most this many jobs at the provider at
    # once (None: no limit), and per model (`MODEL_CONCURRENCY="model-id=2,other-id=1"`).
    # Jobs beyond a capacity wait in our queue and are admitted in a fair order.
    provider_concurrency: int | None = None
    model_concurrency: Mapping[str, int] = field(default_factory=dict, hash=False)
    # How long a binding quote (`POST /v1/video/quotes`) holds its price.
    quote_ttl_seconds: float = 900

    def capacity_limits(self, model: str) -> bool:
        """Whether a job of `model` counts against a capacity whatever its account (the
        provider's or the model's)."""
        return self.provider_concurrency is not None or model in self.model_concurrency

    @property
    def completions_queue(self) -> str:
        """Settlement, ingestion and the dispatcher's tick: a queue of their own, so a burst
        of finished renders, or a backlog of polls, never makes them wait behind polls."""
        return f"{self.celery_queue}.completions"

    @property
    def webhooks_queue(self) -> str:
        """Customer webhook deliveries: a flood of them never delays polls or completions."""
        return f"{self.celery_queue}.webhooks"

    @property
    def celery_queues(self) -> tuple[str, ...]:
        """Every queue a worker reads (each worker reads all unless told otherwise)."""
        return (self.celery_queue, self.completions_queue, self.webhooks_queue)

    @property
    def broker_is_filesystem(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    @property
    def simulator_root(self) -> Path:
        return self.data_dir / "simulator"

    def ensure_local_dirs(self) -> None:
        """Create the folders the embedded default writes to."""
        for path in (self.data_dir, self.media_root, self.simulator_root):
            path.mkdir(parents=True, exist_ok=True)
        if self.broker_is_filesystem:
            (self.broker_folder / "queue").mkdir(parents=True, exist_ok=True)
            (self.broker_folder / "processed").mkdir(parents=True, exist_ok=True)
            (self.broker_folder / "control").mkdir(parents=True, exist_ok=True)


# Standard Webhooks' suggested schedule: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h after the
# first attempt, 27.6 h in all (at least 24 h even before the jitter stretches it).
WEBHOOK_RETRY_SCHEDULE = "5,300,1800,7200,18000,36000,36000"


def _number(env: Mapping[str, str], name: str, default: str) -> Decimal:
    raw = env.get(name, default)
    try:
        return Decimal(raw)
    except ArithmeticError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc


def _optional_count(env: Mapping[str, str], name: str) -> int | None:
    """A positive whole number, or None when unset or empty."""
    raw = env.get(name)
    if raw in (None, ""):
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a whole number above 0, got {raw!r}")
    return int(raw)


def _counts(env: Mapping[str, str], name: str) -> dict[str, int]:
    """`"a=2,b=1"` as {"a": 2, "b": 1} (each a positive whole number)."""
    counts: dict[str, int] = {}
    for part in filter(None, (piece.strip() for piece in (env.get(name) or "").split(","))):
        key, _, value = part.rpartition("=")
        count = _optional_count({name: value}, name)
        if not key or count is None:
            raise ConfigError(f"{name} must read like 'model-id=2,other-id=1', got {part!r}")
        counts[key.strip()] = count
    return counts


def _optional_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    return None if raw in (None, "") else float(_number(env, name, raw))


def _schedule(env: Mapping[str, str], name: str, default: str) -> tuple[float, ...]:
    raw = env.get(name) or default
    waits = tuple(float(_number({name: part.strip()}, name, "")) for part in raw.split(","))
    if not all(0 < wait < 10**7 for wait in waits):
        raise ConfigError(f"{name} must be positive numbers of seconds, got {raw!r}")
    return waits


def _rate(env: Mapping[str, str], name: str, default: str) -> Rate:
    raw = env.get(name) or default
    match = _RATE.fullmatch(raw.lower())
    if match is None or int(match.group(1)) < 1:
        raise ConfigError(f"{name} must read like '600 per minute', got {raw!r}")
    amount, count, unit = match.groups()
    return Rate(int(amount), int(count or 1) * _UNIT_SECONDS[unit])


def _limit_storage(env: Mapping[str, str]) -> str:
    broker = env.get("CELERY_BROKER_URL") or ""
    return broker if broker.startswith(("redis://", "rediss://")) else "memory://"


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check the settings; `env` defaults to the process environment."""
    env = os.environ if env is None else env
    data_dir = Path(env.get("NAIVE_DATA_DIR", "var")).resolve()
    provider = env.get("NAIVE_PROVIDER", "simulator")
    if provider not in PROVIDERS:
        raise ConfigError(f"NAIVE_PROVIDER must be one of {PROVIDERS}, got {provider!r}")
    fal_key = env.get("FAL_KEY") or None
    if provider == "fal" and not fal_key:
        raise ConfigError("NAIVE_PROVIDER=fal needs FAL_KEY")
    fal_priority = env.get("FAL_PRIORITY") or None
    if fal_priority not in (None, "normal", "low"):
        raise ConfigError("FAL_PRIORITY must be normal or low")
    settings = Settings(
        data_dir=data_dir,
        database_url=env.get("DATABASE_URL") or f"sqlite:///{data_dir / 'naive.db'}",
        # A host name kombu does not use, but warns about on every connection without one.
        broker_url=env.get("CELERY_BROKER_URL") or "filesystem://localhost/",
        celery_queue=env.get("CELERY_QUEUE") or "celery",
        media_root=Path(env.get("MEDIA_ROOT") or data_dir / "media").resolve(),
        provider=provider,
        fal_key=fal_key,
        fal_webhook_url=env.get("FAL_WEBHOOK_URL") or None,
        fal_jwks_url=env.get("FAL_JWKS_URL", "https://rest.alpha.fal.ai/.well-known/jwks.json"),
        fal_platform_url=env.get("FAL_PLATFORM_URL", "https://api.fal.ai/v1").rstrip("/"),
        fal_start_timeout_seconds=_optional_float(env, "FAL_START_TIMEOUT_SECONDS"),
        fal_priority=fal_priority,
        catalog_ttl_seconds=float(_number(env, "CATALOG_TTL_SECONDS", "3600")),
        catalog_cache_seconds=float(_number(env, "CATALOG_CACHE_SECONDS", "30")),
        public_base_url=(env.get("PUBLIC_BASE_URL") or "").rstrip("/") or None,
        secret_key=env.get("SECRET_KEY", "dev-only-not-secret"),
        credit_value_usd=_number(env, "CREDIT_VALUE_USD", "0.50"),
        credit_markup=_number(env, "CREDIT_MARKUP", "5"),
        new_account_credits=_number(env, "NEW_ACCOUNT_CREDITS", "100"),
        poll_initial_seconds=float(_number(env, "POLL_INITIAL_SECONDS", "2")),
        poll_max_seconds=float(_number(env, "POLL_MAX_SECONDS", "15")),
        dispatch_interval_seconds=float(_number(env, "DISPATCH_INTERVAL_SECONDS", "1")),
        dispatch_grace_seconds=float(_number(env, "DISPATCH_GRACE_SECONDS", "1")),
        poll_horizon_seconds=float(_number(env, "POLL_HORIZON_SECONDS", "2")),
        poll_batch_size=_optional_count(env, "POLL_BATCH_SIZE") or 100,
        job_deadline_seconds=_optional_float(env, "JOB_DEADLINE_SECONDS"),
        submit_retry_seconds=float(_number(env, "SUBMIT_RETRY_SECONDS", "300")),
        result_retry_seconds=float(_number(env, "RESULT_RETRY_SECONDS", "120")),
        simulator_latency_seconds=_optional_float(env, "SIMULATOR_LATENCY_SECONDS"),
        max_request_bytes=int(_number(env, "MAX_REQUEST_BYTES", str(2 * 1024 * 1024))),
        allow_private_image_urls=env.get("ALLOW_PRIVATE_IMAGE_URLS", "") in ("1", "true", "yes"),
        webhook_allow_private_urls=(
            env.get("WEBHOOK_ALLOW_PRIVATE_URLS", "") in ("1", "true", "yes")
        ),
        webhook_retry_schedule=_schedule(env, "WEBHOOK_RETRY_SCHEDULE", WEBHOOK_RETRY_SCHEDULE),
        webhook_disable_after_seconds=float(
            _number(env, "WEBHOOK_DISABLE_AFTER_SECONDS", str(5 * 86400))
        ),
        rate_limit=_rate(env, "RATE_LIMIT", "600 per minute"),
        rate_limit_auth_failures=_rate(env, "RATE_LIMIT_AUTH_FAILURES", "30 per minute"),
        rate_limit_webhooks=_rate(env, "RATE_LIMIT_WEBHOOKS", "1200 per minute"),
        rate_limit_storage_url=env.get("RATE_LIMIT_STORAGE_URL") or _limit_storage(env),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        log_json=env.get("LOG_FORMAT", "json") == "json",
        worker_metrics_port=int(env["WORKER_METRICS_PORT"])
        if env.get("WORKER_METRICS_PORT")
        else None,
        worker_heartbeat_file=Path(env["WORKER_HEARTBEAT_FILE"])
        if env.get("WORKER_HEARTBEAT_FILE")
        else None,
        visibility_timeout_seconds=int(_number(env, "VISIBILITY_TIMEOUT_SECONDS", "3600")),
        media_storage=env.get("MEDIA_STORAGE") or "local",
        s3_bucket=env.get("S3_BUCKET") or None,
        s3_prefix=(env.get("S3_PREFIX") or "").strip("/"),
        s3_endpoint_url=env.get("S3_ENDPOINT_URL") or None,
        s3_region=env.get("S3_REGION") or "us-east-1",
        api_metrics_port=int(_number(env, "API_METRICS_PORT", "9101")),
        admin_token=env.get("ADMIN_TOKEN") or None,
        event_stream_heartbeat_seconds=float(_number(env, "EVENT_STREAM_HEARTBEAT_SECONDS", "15")),
        event_stream_max_seconds=float(_number(env, "EVENT_STREAM_MAX_SECONDS", "300")),
        provider_concurrency=_optional_count(env, "PROVIDER_CONCURRENCY"),
        model_concurrency=_counts(env, "MODEL_CONCURRENCY"),
        quote_ttl_seconds=float(_number(env, "QUOTE_TTL_SECONDS", "900")),
    )
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if settings.media_storage not in MEDIA_STORAGES:
        raise ConfigError(f"MEDIA_STORAGE must be one of {MEDIA_STORAGES}")
    if settings.media_storage == "s3" and not settings.s3_bucket:
        raise ConfigError("MEDIA_STORAGE=s3 needs S3_BUCKET")
    if settings.credit_value_usd <= 0:
        raise ConfigError("CREDIT_VALUE_USD must be positive")
    if settings.poll_max_seconds < settings.poll_initial_seconds:
        raise ConfigError("POLL_MAX_SECONDS must be at least POLL_INITIAL_SECONDS")
    # Redis redelivers anything unacknowledged after the visibility timeout, countdown
    # retries included: a poll countdown near it would run every poll twice.
    if settings.poll_max_seconds * 4 > settings.visibility_timeout_seconds / WEBHOOK_POLL_SLOWDOWN:
        raise ConfigError("POLL_MAX_SECONDS must stay far below VISIBILITY_TIMEOUT_SECONDS")
    if settings.dispatch_interval_seconds <= 0 or settings.dispatch_grace_seconds < 0:
        raise ConfigError("DISPATCH_INTERVAL_SECONDS must be positive, the grace not negative")
    # Each dispatch sends the parked polls due before the next one (and a little more).
    if settings.poll_horizon_seconds < settings.dispatch_interval_seconds:
        raise ConfigError("POLL_HORIZON_SECONDS must be at least DISPATCH_INTERVAL_SECONDS")
    if settings.event_stream_heartbeat_seconds <= 0 or settings.event_stream_max_seconds <= 0:
        raise ConfigError("EVENT_STREAM_HEARTBEAT_SECONDS and _MAX_SECONDS must be positive")
    # The operator token grants credits: one short enough to guess is refused.
    if settings.webhook_disable_after_seconds <= 0:
        raise ConfigError("WEBHOOK_DISABLE_AFTER_SECONDS must be above 0")
    if settings.quote_ttl_seconds <= 0:
        raise ConfigError("QUOTE_TTL_SECONDS must be above 0")
    if settings.admin_token is not None and len(settings.admin_token) < 16:
        raise ConfigError("ADMIN_TOKEN must be at least 16 characters")
