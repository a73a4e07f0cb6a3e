"""The CLI's tables at a terminal's width: at 80 columns (and wider) every row's id is
printed whole on one line, and no line is wider than the terminal."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console, RenderableType

from services.cli import views
from shared.budgets.schemas import Budget
from shared.catalog.builtin import all_models
from shared.catalog.schemas import Model
from shared.jobs.schemas import Job
from shared.ledger.schemas import Credits, Usage
from shared.media.schemas import MediaAsset
from shared.webhooks.schemas import Webhook, WebhookDelivery

NOW = datetime(2026, 11, 30, 9, 41, 7, 123456, tzinfo=UTC).isoformat()
MODEL_IDS = [model.id for model in all_models()]  # up to 49 characters


def _id() -> str:
    return str(uuid.uuid4())


def _jobs() -> list[Job]:
    return [
        Job.model_validate(
            {
                "id": _id(),
                "type": "video_generation",
                "status": "completed" if n % 2 else "processing",
                "progress": 100 if n % 2 else 40,
                "model": model,
                "input": {"prompt": "A lighthouse at dusk"},
                "result": None,
                "error": None,
                "credits_used": 3.5 if n % 2 else None,
                "estimated_credits": 3.5,
                "estimated_seconds": 60,
                "provider_request_id": None,
                "queue_position": None,
                "cancel_requested_at": None,
                "logs": [],
                "created_at": NOW,
                "started_at": None,
                "completed_at": None,
                "metadata": {},
            }
        )
        for n, model in enumerate(MODEL_IDS)
    ]


def _assets() -> list[MediaAsset]:
    return [
        MediaAsset.model_validate(
            {
                "id": _id(),
                "url": "https://media.example.com/v1/media/x/content?token=abc",
                "poster_url": None,
                "filename": "a-golden-retriever-running-on-a-beach-at-sunset-again.mp4",
                "content_type": "video/mp4",
                "size_bytes": 1_234_567,
                "duration_seconds": 5.0,
                "width": 640,
                "height": 360,
                "source_type": "video_generation",
                "source_job_id": _id(),
                "title": title,
                "tags": [],
                "created_at": NOW,
            }
        )
        for title in (None, "A golden retriever running on a beach at sunset, in slow motion")
    ]


def _credits() -> Credits:
    entry = {"amount": 3.5, "note": None, "created_at": NOW}
    return Credits.model_validate(
        {
            "balance": 96.5,
            "held": 3.5,
            "available": 93,
            "credit_value_usd": 0.5,
            "entries": [
                {**entry, "id": _id(), "kind": "hold", "job_id": None, "batch_id": _id()},
                {**entry, "id": _id(), "kind": "capture", "job_id": _id()},
                {**entry, "id": _id(), "kind": "topup", "job_id": None},
            ],
        }
    )


def _webhooks() -> list[Webhook]:
    return [
        Webhook.model_validate(
            {
                "id": _id(),
                "url": "https://hooks.example.com/naive-video/receiver/with/a/long/path",
                "events": ["job.completed", "job.failed", "job.processing"],
                "description": None,
                "status": status,
                "disabled_reason": reason,
                "created_at": NOW,
            }
        )
        for status, reason in (
            ("enabled", None),
            ("disabled", "every delivery attempt failed for 5 days (the last: 503)"),
        )
    ]


def _deliveries() -> list[WebhookDelivery]:
    return [
        WebhookDelivery.model_validate(
            {
                "id": _id(),
                "event": "job.completed",
                "job_id": _id(),
                "seq": 7,
                "status": "failed",
                "attempts": 3,
                "last_response_code": None,
                "last_error": "connection refused by the receiver after a long wait",
                "latency_ms": 120,
                "last_attempt_at": NOW,
                "next_attempt_at": NOW,
                "created_at": NOW,
            }
        )
    ]


def _budgets() -> list[Budget]:
    common = {"period_start": NOW, "period_end": NOW, "created_at": NOW, "updated_at": NOW}
    return [
        Budget.model_validate(
            {
                **common,
                "id": _id(),
                "scope": scope,
                "key_id": key_id,
                "period": "month",
                "credits": 100,
                "spent_credits": 3.5,
                "remaining_credits": 96.5,
            }
        )
        for scope, key_id in (("account", None), ("key", _id()))
    ]


def _usage() -> Usage:
    def sums(group: str | None) -> dict[str, Any]:
        return {
            "group": group,
            "charged_credits": 123.5,
            "jobs": 42,
            "provider_units": 210.0,
            "provider_cost_usd": 14.7,
            "jobs_without_units": 0,
        }

    return Usage.model_validate(
        {
            "from": "2026-11-01T00:00:00Z",
            "to": "2026-12-01T00:00:00Z",
            "group_by": "model",
            "credit_value_usd": 0.5,
            "rows": [sums(model) for model in MODEL_IDS],
            "totals": sums(None),
        }
    )


def _usage_by_key() -> Usage:
    usage = _usage()
    usage.group_by = "key"
    for n, row in enumerate(usage.rows):
        row.group, row.key_prefix = _id(), f"nv_sk_{n:06d}"
    usage.rows[-1].group, usage.rows[-1].key_prefix = None, None  # jobs before keys were kept
    return usage


def _models() -> list[Model]:
    return [Model.of(model, 0.5) for model in all_models()]


# Each view, the data it shows, the ids it must print whole, and short values (a status, a
# price) that a table squeezed into too many columns cuts ("proc…") or breaks over lines.
Case = tuple[
    Callable[[Any], RenderableType], Callable[[], Any], Callable[[Any], list[str]], list[str]
]
VIEWS: dict[str, Case] = {
    "jobs": (
        views.jobs,
        _jobs,
        lambda page: [str(job.id) for job in page],
        ["processing", "completed", "~3.5"],
    ),
    "media": (
        views.media,
        _assets,
        lambda page: [str(asset.id) for asset in page],
        ["1.2 MB", "5 s"],
    ),
    "models": (
        views.models,
        _models,
        lambda catalog: [model.id for model in catalog],
        ["$0.07/second", "$0.5/video", "60 s"],
    ),
    "credits": (
        views.credits,
        _credits,
        lambda data: [str(e.job_id or e.batch_id) for e in data.entries if e.job_id or e.batch_id],
        ["capture", "topup", "3.5"],
    ),
    "usage": (
        views.usage,
        _usage,
        lambda data: [str(row.group) for row in data.rows],
        ["123.5", "$14.70", "Total"],
    ),
    "usage by key": (
        views.usage,
        _usage_by_key,
        lambda data: [str(row.group) for row in data.rows if row.group],
        ["nv_sk_000001", "(none)", "Total"],
    ),
    "webhooks": (
        views.webhooks,
        _webhooks,
        lambda page: [str(hook.id) for hook in page],
        ["job.completed,", "enabled", "disabled"],
    ),
    "deliveries": (
        views.deliveries,
        _deliveries,
        lambda page: [str(d.id) for d in page] + [str(d.job_id) for d in page],
        ["job.completed", "failed"],
    ),
    "budgets": (
        views.budgets,
        _budgets,
        lambda page: [str(b.id) for b in page] + [str(b.key_id) for b in page if b.key_id],
        ["account", "month", "96.5"],
    ),
}


def render(renderable: RenderableType, width: int) -> list[str]:
    """What a terminal `width` columns wide shows, as the CLI prints it (not cropped)."""
    console = Console(width=width, record=True, color_system=None, file=io.StringIO())
    console.print(renderable, crop=False)
    return console.export_text().splitlines()


@pytest.mark.parametrize("width", [80, 100, 120, 160, 250])
@pytest.mark.parametrize("name", list(VIEWS))
def test_every_id_is_whole_on_one_line_and_no_cell_is_cut(name, width):
    view, make, ids_of, values = VIEWS[name]
    data = make()
    lines = render(view(data), width)
    screen = "\n".join(lines)
    assert max(len(line.rstrip()) for line in lines) <= width, screen
    for identifier in ids_of(data):
        assert any(identifier in line for line in lines), f"{identifier} not whole:\n{screen}"
    for value in values:
        assert any(value in line for line in lines), f"{value!r} not whole:\n{screen}"
    assert "…" not in screen, screen


@pytest.mark.parametrize("width", [40, 60, 79])
@pytest.mark.parametrize("name", list(VIEWS))
def test_below_80_columns_no_id_is_cut(name, width):
    """Too narrow for a table's ids: its lines are as wide as the ids need (the terminal
    wraps them), never cut to the width, which dropped an id's end without a sign
    (`…/standard/text-to-vide` at 60 columns)."""
    view, make, ids_of, _ = VIEWS[name]
    data = make()
    lines = render(view(data), width)
    screen = "\n".join(lines)
    for identifier in ids_of(data):
        assert any(identifier in line for line in lines), f"{identifier} cut:\n{screen}"


def test_a_narrow_table_still_shows_what_matters():
    """At 80 columns the jobs table keeps status, progress, charge, time and model (under
    the id, folded if need be); the wide one, with its full times, at a wide terminal."""
    page = _jobs()
    narrow = "\n".join(render(views.jobs(page), 80))
    assert "processing 40%" in narrow and "~3.5" in narrow and "11-30 09:41" in narrow
    assert "fal-ai/wan/v2.7/text-to-video" in narrow
    wide = "\n".join(render(views.jobs(page), 250))
    assert "2026-11-30T09:41:07.123456Z" in wide and "~3.5 (est.)" in wide


def test_an_assets_signed_url_is_printed_whole_on_one_line():
    """`naive media get` prints the content URL (about 170 characters, signed) outside the
    panel and unwrapped, as `naive jobs get` prints a job's: folded between borders it
    could not be copied."""
    asset = _assets()[1]
    asset.url = (
        f"https://media.example.com/v1/media/{asset.id}/content?expires=1765100000&token={'a' * 64}"
    )
    lines = render(views.asset(asset), 80)
    assert asset.url in lines, "\n".join(lines)
    assert str(asset.id) in "\n".join(lines)


@pytest.mark.parametrize(
    ("value", "shown"),
    [(1e9, "1000000000"), (1234567.5, "1234567.5"), (3.5, "3.5"), (100, "100"), (0.0875, "0.0875"),
     (0.1 + 0.2, "0.3"), (0, "0"), (None, "—")],
)  # fmt: skip
def test_numbers_are_shown_as_written(value, shown):
    """`:g` showed a balance of 1,234,567.5 credits as 1.23457e+06 and 1e9 as 1e+09."""
    assert views.number(value) == shown
