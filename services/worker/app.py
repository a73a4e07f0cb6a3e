"""Entry point: `celery -A services.worker.app worker|beat`."""

from services.worker import lifecycle  # noqa: F401  (connects the worker's signal handlers)
from services.worker.celery_app import make_celery
from shared.config import load_settings

app = make_celery(load_settings())
