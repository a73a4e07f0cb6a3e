"""Structured JSON logs, with the job's ids on every line of its life.

`job_context(...)` binds `job_id`, `account_id` and `provider_request_id` for the code
it wraps (context variables, so threads and requests do not mix them up); a filter
copies them onto every record, ours and the libraries' alike.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

from pythonjsonlogger.json import JsonFormatter

_context: ContextVar[Mapping[str, str]] = ContextVar(
    "naive_log_context", default=MappingProxyType({})
)


@contextmanager
def job_context(**ids: Any) -> Iterator[None]:
    """Add ids to every log line written inside the block (None values are skipped)."""
    merged = {**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}}
    token = _context.set(merged)
    try:
        yield
    finally:
        _context.reset(token)


def bind(**ids: Any) -> None:
    """Add ids to the current context until it ends (a request, a task)."""
    _context.set({**_context.get(), **{k: str(v) for k, v in ids.items() if v is not None}})


def reset() -> None:
    """Start a fresh context (a new request on a reused thread)."""
    _context.set({})


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            setattr(record, key, value)
        return True


def configure(level: str = "INFO", *, json_format: bool = True) -> None:
    """Send every log line to stderr, as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    if json_format:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
