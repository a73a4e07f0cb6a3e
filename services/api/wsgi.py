"""Entry point for gunicorn: `gunicorn services.api.wsgi:app`: the API, and its metrics on
their own listener."""

from services.api.app import create_app
from services.api.metrics_listener import with_metrics_listener
from shared import logs
from shared.config import load_settings

settings = load_settings()
logs.configure(settings.log_level, json_format=settings.log_json)
api = create_app(settings)
app = with_metrics_listener(api, api.extensions["naive"])
