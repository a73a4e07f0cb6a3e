"""Rich renderings of the API's objects for a person at a terminal."""

from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "queued": "yellow",
    "processing": "cyan",
    "completed": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def cell(value: Any) -> Text:
    """The API's data as plain text: never parsed as rich markup."""
    return Text("—" if value is None or value == "" else str(value))


def number(value: Any) -> str:
    """A number without trailing zeros, or a dash."""
    return f"{value:g}" if isinstance(value, int | float) else "—"


def file_size(size: Any) -> str:
    """Bytes as a short human size, e.g. `4.5 MB`."""
    if not isinstance(size, int | float):
        return "—"
    units = ("B", "KB", "MB", "GB", "TB")
    power = 0
    while size >= 1000 and power < len(units) - 1:
        size /= 1000
        power += 1
    return f"{size:.0f} B" if power == 0 else f"{size:.1f} {units[power]}"


def status(value: Any) -> Text:
    """A job status, coloured."""
    return Text(str(value), style=STATUS_STYLES.get(str(value), ""))


def fields(rows: Iterable[tuple[str, RenderableType]]) -> Table:
    """A two-column label/value grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


def accepted(response: Mapping[str, Any]) -> RenderableType:
    """The answer to a submitted generation."""
    return fields(
        [
            ("Job", cell(response.get("job_id"))),
            ("Status", status(response.get("status"))),
            ("Model", cell(response.get("model"))),
            ("Estimated credits", cell(number(response.get("estimated_credits")))),
            ("Estimated time", cell(f"{number(response.get('estimated_seconds'))} s")),
        ]
    )


def job(data: Mapping[str, Any]) -> RenderableType:
    """One job in full."""
    result = data.get("result") or {}
    video = result.get("video") or {}
    error = data.get("error") or {}
    progress = data.get("progress")
    rows: list[tuple[str, RenderableType]] = [
        ("Status", status(data.get("status"))),
        ("Progress", cell(f"{progress}%" if progress is not None else None)),
    ]
    if data.get("queue_position") is not None:
        rows.append(("Queue position", cell(data["queue_position"])))
    if data.get("cancel_requested_at") and data.get("status") in ("queued", "processing"):
        rows.append(("Cancel requested", cell(data["cancel_requested_at"])))
    rows += [
        ("Type", cell(data.get("type"))),
        ("Model", cell(data.get("model"))),
        ("Prompt", cell((data.get("input") or {}).get("prompt"))),
        ("Credits", cell(_credits(data))),
        ("Created", cell(data.get("created_at"))),
        ("Started", cell(data.get("started_at"))),
        ("Completed", cell(data.get("completed_at"))),
    ]
    if video:
        rows.append(("Video", cell(f"{file_size(video.get('file_size'))}, URL below")))
    if result.get("media_asset_id"):
        rows.append(("Media asset", cell(result["media_asset_id"])))
    if error:
        rows.append(("Error", Text(f"{error.get('message')} ({error.get('code')})", style="red")))
    panel = Panel(fields(rows), title=f"Job {data.get('id')}", title_align="left", expand=False)
    if not video.get("url"):
        return panel
    # Outside the panel and unwrapped: a URL folded between borders cannot be copied whole.
    return Group(panel, Text(str(video["url"]), no_wrap=True, overflow="ignore"))


def finished_video(data: Mapping[str, Any]) -> RenderableType:
    """The end of `--wait`: the video's URL unwrapped (so it copies whole), size and cost."""
    video = (data.get("result") or {}).get("video") or {}
    return Group(
        Text.assemble(("✓ ", "green"), f"Job {data.get('id')} completed"),
        Text(str(video.get("url")), no_wrap=True, overflow="ignore"),
        Text(f"{file_size(video.get('file_size'))}, {number(data.get('credits_used'))} credits"),
    )


def models(data: Iterable[Mapping[str, Any]]) -> RenderableType:
    """The model catalog."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Model", no_wrap=True)
    table.add_column("Mode")
    table.add_column("Best for")
    table.add_column("Price", justify="right")
    table.add_column("Est. time", justify="right")
    for model in data:
        pricing = model.get("pricing") or {}
        table.add_row(
            cell(model.get("id")),
            cell(model.get("mode")),
            cell(model.get("best_for")),
            cell(f"${number(pricing.get('unit_price_usd'))}/{pricing.get('unit', '?')}"),
            cell(f"{number(model.get('estimated_seconds'))} s"),
        )
    return table


def pricing(data: Mapping[str, Any]) -> RenderableType:
    """A cost preview."""
    return fields(
        [
            ("Model", cell(data.get("model"))),
            ("Duration", cell(f"{data.get('duration')} s")),
            ("Estimated credits", Text(number(data.get("estimated_credits")), style="bold")),
            (
                "Unit price",
                cell(f"${number(data.get('unit_price_usd'))}/{data.get('unit', 'second')}"),
            ),
            ("Credit value", cell(_usd(data.get("credit_value_usd")))),
        ]
    )


def jobs(data: Iterable[Mapping[str, Any]]) -> RenderableType:
    """A page of jobs."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Job", no_wrap=True)
    table.add_column("Status")
    table.add_column("Progress", justify="right")
    table.add_column("Model", overflow="fold")
    table.add_column("Credits", justify="right")
    table.add_column("Created", overflow="fold")
    for item in data:
        progress = item.get("progress")
        table.add_row(
            cell(item.get("id")),
            status(item.get("status")),
            cell(f"{progress}%" if progress is not None else None),
            cell(item.get("model")),
            cell(_credits(item)),
            cell(item.get("created_at")),
        )
    return table


def media(data: Iterable[Mapping[str, Any]]) -> RenderableType:
    """A page of media assets."""
    table = Table(box=box.SIMPLE_HEAD)
    table.add_column("Asset", no_wrap=True)
    table.add_column("Title")
    table.add_column("Type")
    table.add_column("Size", justify="right")
    table.add_column("Length", justify="right")
    table.add_column("Frame")
    table.add_column("Created")
    for asset in data:
        table.add_row(
            cell(asset.get("id")),
            cell(asset.get("title") or asset.get("filename")),
            cell(asset.get("content_type")),
            cell(file_size(asset.get("size_bytes"))),
            cell(_seconds(asset.get("duration_seconds"))),
            cell(_frame(asset)),
            cell(asset.get("created_at")),
        )
    return table


def asset(data: Mapping[str, Any]) -> RenderableType:
    """One media asset in full."""
    rows: list[tuple[str, RenderableType]] = [
        ("Title", cell(data.get("title"))),
        ("File", cell(data.get("filename"))),
        ("Type", cell(data.get("content_type"))),
        ("Size", cell(file_size(data.get("size_bytes")))),
        ("Length", cell(_seconds(data.get("duration_seconds")))),
        ("Frame", cell(_frame(data))),
        ("Source", cell(data.get("source_type"))),
        ("Source job", cell(data.get("source_job_id"))),
        ("Tags", cell(", ".join(map(str, data.get("tags") or [])))),
        ("Created", cell(data.get("created_at"))),
        ("URL", Text(str(data.get("url")), overflow="fold")),
    ]
    return Panel(fields(rows), title=f"Asset {data.get('id')}", title_align="left", expand=False)


def credits(data: Mapping[str, Any]) -> RenderableType:
    """The balance and the ledger."""
    value = data.get("credit_value_usd")
    available = data.get("available")
    worth = (
        f" (${available * value:.2f})"
        if isinstance(available, int | float) and isinstance(value, int | float)
        else ""
    )
    summary = fields(
        [
            ("Available", Text(number(available) + worth, style="bold green")),
            ("Held", cell(number(data.get("held")))),
            ("Balance", cell(number(data.get("balance")))),
            ("1 credit", cell(_usd(value))),
        ]
    )
    ledger = Table(box=box.SIMPLE_HEAD, title="Ledger", title_justify="left")
    ledger.add_column("When")
    ledger.add_column("Kind")
    ledger.add_column("Amount", justify="right")
    ledger.add_column("Job", no_wrap=True)
    for entry in data.get("entries") or []:
        ledger.add_row(
            cell(entry.get("created_at")),
            cell(entry.get("kind")),
            cell(number(entry.get("amount"))),
            cell(entry.get("job_id")),
        )
    return Group(summary, ledger)


def _credits(data: Mapping[str, Any]) -> str:
    """Credits used once known, else the estimate."""
    if data.get("credits_used") is not None:
        return number(data["credits_used"])
    if data.get("estimated_credits") is not None:
        return f"~{number(data['estimated_credits'])} (est.)"
    return "—"


def _usd(value: Any) -> str:
    return f"${value:.2f}" if isinstance(value, int | float) else "—"


def _seconds(value: Any) -> str | None:
    return f"{value:g} s" if isinstance(value, int | float) else None


def _frame(data: Mapping[str, Any]) -> str | None:
    width, height = data.get("width"), data.get("height")
    return f"{width}×{height}" if width and height else None
