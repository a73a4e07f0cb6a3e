"""The Flask app factory: a flat list of set-up steps that fails fast on bad settings."""

from __future__ import annotations

from flask import Flask
from flask.json.provider import DefaultJSONProvider

from services.api import errors, http_metrics, ratelimit
from services.api.routes import (
    admin,
    batches,
    budgets,
    credits,
    customer_webhooks,
    jobs,
    media,
    ops,
    usage,
    video,
    webhooks,
)
from services.worker.celery_app import make_celery
from shared import logs
from shared.catalog.sync import CatalogCache
from shared.config import Settings, load_settings
from shared.providers.fal_protocol import WebhookVerifier
from shared.runtime import Runtime

LOOPBACK_HOSTS = ["localhost", "127.0.0.1"]


class JsonInOrder(DefaultJSONProvider):
    """Answers keep the order of their schema's fields (the order the docs show)."""

    sort_keys = False


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or load_settings()
    runtime: Runtime = Runtime(settings)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    if settings.public_base_url is None:
        # URLs in answers then come from the Host header, which the client writes: only
        # this machine's own names are answered (the embedded default), others get 400.
        app.config["TRUSTED_HOSTS"] = LOOPBACK_HOSTS
    app.json = JsonInOrder(app)
    app.extensions["naive"] = runtime
    app.extensions["naive.celery"] = make_celery(settings)
    app.extensions["naive.fal_webhooks"] = WebhookVerifier(settings.fal_jwks_url)
    app.extensions["naive.catalog"] = CatalogCache(runtime.db, settings)
    app.before_request(logs.reset)
    errors.init_app(app)
    http_metrics.init_app(app)
    blueprints = (
        video.bp,
        jobs.bp,
        media.bp,
        credits.bp,
        usage.bp,
        ops.bp,
        webhooks.bp,
        customer_webhooks.bp,
        customer_webhooks.deliveries_bp,
        admin.bp,
        budgets.bp,
        batches.bp,
    )
    for blueprint in blueprints:
        app.register_blueprint(blueprint)
    # Operations are not the API's customers' traffic; fal's callbacks have a budget of their
    # own per client address (forged ones would otherwise be unlimited).
    ratelimit.init_app(
        app, settings, exempt=[ops.bp], own_budgets={webhooks.bp: settings.rate_limit_webhooks}
    )
    runtime.db.ping()  # fail at start-up, not on the first request
    return app
