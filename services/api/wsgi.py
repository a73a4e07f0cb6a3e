"""Entry point for gunicorn: `gunicorn services.api.wsgi:app`."""

from services.api.app import create_app
from shared import logs
from shared.config import load_settings

settings = load_settings()
logs.configure(settings.log_level, json_format=settings.log_json)
app = create_app(settings)
