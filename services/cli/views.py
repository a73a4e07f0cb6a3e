"""Rich renderings of the API's objects for a person at a terminal.

Each view takes the wire model the API rendered the object with (`shared/*/schemas.py`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic_core import to_jsonable_python
from rich import box
from rich.console import Console, ConsoleOptions, Group, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from services.cli.numbers import number
from services.cli.wait import Update
from shared.batches.schemas import Batch, BatchAccepted
from shared.budgets.schemas import Budget
from shared.catalog.schemas import BindingQuote, Model, PriceQuote
from shared.jobs.schemas import Job, JobAccepted
from shared.jobs.status import PublicStatus
from shared.ledger.schemas import Credits, Usage
from shared.webhooks.schemas import DeliveryStatus, Webhook, WebhookCreated, WebhookDelivery

if TYPE_CHECKING:  # imported where used: the media library's module is slow to import
    from shared.media.schemas import MediaAsset

STATUS_STYLES: dict[PublicStatus, str] = {
    PublicStatus.QUEUED: "yellow",
    PublicStatus.PROCESSING: "cyan",
    PublicStatus.COMPLETED: "green",
    PublicStatus.FAILED: "red",
    PublicStatus.CANCELLED: "magenta",
}

DELIVERY_STYLES: dict[DeliveryStatus, str] = {
    "pending": "yellow",
    "delivered": "green",
    "failed": "red",
}


def cell(value: Any) -> Text:
    """The API's data as plain text, spelled as on the wire (an instant as its ISO string):
    never parsed as rich markup."""
    return Text("—" if value is None or value == "" else str(to_jsonable_python(value)))


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


def status(value: PublicStatus) -> Text:
    """A job status, coloured."""
    return Text(value.value, style=STATUS_STYLES[value])


def fields(rows: Iterable[tuple[str, RenderableType]]) -> Table:
    """A two-column label/value grid."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, value in rows:
        grid.add_row(label, value)
    return grid


UNBOUNDED = 100_000


class Fitted:
    """A table laid out for the width it is printed at: the first of `layouts` (richest
    first) whose rows fit unwrapped, else the last, the narrowest, which is made to fit 80
    columns. Ids stay whole on one line in every layout (a folded id cannot be copied)."""

    def __init__(self, *layouts: Callable[[], Table]) -> None:
        self.layouts = layouts

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(UNBOUNDED)  # a table's measure is capped at the width
        for build in self.layouts[:-1]:
            table = build()
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                yield table
                return
        narrowest = self.layouts[-1]()
        needed = Measurement.get(console, unbounded, narrowest).maximum
        if needed <= options.max_width:
            yield narrowest
            return
        # Narrower than its ids and short cells (whose measure is the most they take: the
        # notes under an id are folded to its width): the table would cut them, and a cut
        # id looks like another, or like none. Its lines are as wide as it needs instead,
        # and the terminal wraps them.
        yield from console.render(narrowest, options.update_width(needed))


@dataclass(frozen=True)
class Column:
    """A column of the narrow layouts; an `optional` one is left out of the narrowest."""

    header: str
    right: bool = False
    optional: bool = False
    footer: str = ""


def narrow_layouts(
    columns: Sequence[Column], rows: Sequence[Sequence[RenderableType]], **options: Any
) -> tuple[Callable[[], Table], Callable[[], Table]]:
    """Two layouts for narrow terminals, made to fit 80 columns, then fewer: all `columns`,
    then without the optional ones. The first column is the row's id (`Identified`); the
    others are short and never wrap. No padding at the table's outer edges (two columns more)."""

    def build(compact: bool) -> Table:
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, **options)
        kept = [i for i, column in enumerate(columns) if not (compact and column.optional)]
        for i in kept:
            justify: JustifyMethod = "right" if columns[i].right else "left"
            table.add_column(columns[i].header, columns[i].footer, justify=justify, no_wrap=i > 0)
        for row in rows:
            table.add_row(*(row[i] for i in kept))
        return table

    return (lambda: build(False)), (lambda: build(True))


class Identified:
    """An id, whole on its line, with lines about it below (dim, folded to the width of the
    column, which the id sets: they are measured as the id is)."""

    def __init__(self, value: Any, *notes: str | None) -> None:
        self.id = Text(str(value), no_wrap=True, overflow="ignore")
        self.notes = [Text(note, style="dim", overflow="fold") for note in notes if note]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.id
        yield from self.notes

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(self.id.cell_len, self.id.cell_len)


def moment(value: datetime | None) -> Text:
    """A time in a narrow table: month, day, hours and minutes, UTC (`11-30 09:41`)."""
    return cell(value and f"{value:%m-%d %H:%M}")


def event(update: Update) -> RenderableType:
    """One event of a job as a line: when, its number, its type, and the job then (its
    charge once it has one: the event that records it differs from the one before only
    there)."""
    data = update.job
    position = f"  queue #{data.queue_position}" if data.queue_position is not None else ""
    charged = (
        f"  charged {number(data.credits_used)} credits" if data.credits_used is not None else ""
    )
    return Text.assemble(
        (update.timestamp.strftime("%H:%M:%S"), "dim"),
        f"  #{update.seq if update.seq is not None else '-'}  ",
        (f"{update.type:<15}", "bold"),
        "  ",
        status(data.status),
        f"  {data.progress}%{position}{charged}",
    )


def accepted(response: JobAccepted) -> RenderableType:
    """The answer to a submitted generation."""
    return fields(
        [
            ("Job", cell(response.job_id)),
            ("Status", status(response.status)),
            ("Model", cell(response.model)),
            ("Estimated credits", cell(number(response.estimated_credits))),
            ("Estimated time", cell(f"{number(response.estimated_seconds)} s")),
        ]
    )


def job(data: Job) -> RenderableType:
    """One job in full."""
    video = data.result.video if data.result else None
    rows: list[tuple[str, RenderableType]] = [
        ("Status", status(data.status)),
        ("Progress", cell(f"{data.progress}%")),
    ]
    if data.queue_position is not None:
        rows.append(("Queue position", cell(data.queue_position)))
    if data.cancel_requested_at and not data.status.is_final:
        rows.append(("Cancel requested", cell(data.cancel_requested_at)))
    rows += [
        ("Type", cell(data.type)),
        ("Model", cell(data.model)),
        ("Prompt", cell(data.input.get("prompt"))),
        ("Credits", cell(_credits(data))),
        ("Created", cell(data.created_at)),
        ("Started", cell(data.started_at)),
        ("Completed", cell(data.completed_at)),
    ]
    if video:
        rows.append(("Video", cell(f"{file_size(video.file_size)}, URL below")))
    if data.result and data.result.media_asset_id:
        rows.append(("Media asset", cell(data.result.media_asset_id)))
    if data.error:
        rows.append(("Error", Text(f"{data.error.message} ({data.error.code})", style="red")))
    panel = Panel(fields(rows), title=f"Job {data.id}", title_align="left", expand=False)
    if not video or not video.url:
        return panel
    # Outside the panel and unwrapped: a URL folded between borders cannot be copied whole.
    return Group(panel, Text(video.url, no_wrap=True, overflow="ignore"))


def finished_video(data: Job) -> RenderableType:
    """The end of `--wait`: the video's URL unwrapped (so it copies whole), size and cost."""
    video = data.result.video if data.result else None
    return Group(
        Text.assemble(("✓ ", "green"), f"Job {data.id} {data.status}"),
        Text(str(video.url if video else None), no_wrap=True, overflow="ignore"),
        Text(
            f"{file_size(video.file_size if video else None)}, {number(data.credits_used)} credits"
        ),
    )


def models(data: Iterable[Model]) -> RenderableType:
    """The model catalog."""
    catalog = list(data)

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Model", no_wrap=True)
        table.add_column("Mode")
        table.add_column("Best for")
        table.add_column("Price", justify="right")
        table.add_column("Est. time", justify="right")
        for model in catalog:
            table.add_row(
                cell(model.id),
                cell(model.mode),
                cell(model.best_for),
                cell(_price(model)),
                cell(f"{number(model.estimated_seconds)} s"),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(model.id, f"{model.mode}: {model.best_for}"),
            cell(_price(model)),
            cell(f"{number(model.estimated_seconds)} s"),
        ]
        for model in catalog
    ]
    header = [Column("Model: mode, best for"), Column("Price", right=True)]
    return Fitted(wide, *narrow_layouts([*header, Column("Time", right=True, optional=True)], rows))


def _price(model: Model) -> str:
    return f"${number(model.pricing.unit_price_usd)}/{model.pricing.unit}"


def pricing(data: PriceQuote) -> RenderableType:
    """A cost preview."""
    return fields(
        [
            ("Model", cell(data.model)),
            ("Duration", cell(f"{data.duration} s")),
            ("Estimated credits", Text(number(data.estimated_credits), style="bold")),
            ("Unit price", cell(f"${number(data.unit_price_usd)}/{data.unit}")),
            ("Credit value", cell(_usd(data.credit_value_usd))),
        ]
    )


def jobs(data: Iterable[Job]) -> RenderableType:
    """A page of jobs."""
    page = list(data)

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Job", no_wrap=True)
        table.add_column("Status")
        table.add_column("Progress", justify="right")
        table.add_column("Model", overflow="fold")
        table.add_column("Credits", justify="right")
        table.add_column("Created", overflow="fold")
        for item in page:
            table.add_row(
                cell(item.id),
                status(item.status),
                cell(f"{item.progress}%"),
                cell(item.model),
                cell(_credits(item)),
                cell(item.created_at),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(item.id, item.model),
            Text.assemble(
                status(item.status), "" if item.status.is_final else f" {item.progress}%"
            ),
            cell(_credits(item, short=True)),
            moment(item.created_at),
        ]
        for item in page
    ]
    columns = [
        Column("Job: model"),
        Column("Status"),
        Column("Credits", right=True, optional=True),
        Column("Created", optional=True),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows))


def media(data: Iterable[MediaAsset]) -> RenderableType:
    """A page of media assets."""
    page = list(data)

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Asset", no_wrap=True)
        table.add_column("Title")
        table.add_column("Type")
        table.add_column("Size", justify="right")
        table.add_column("Length", justify="right")
        table.add_column("Frame")
        table.add_column("Created")
        for item in page:
            table.add_row(
                cell(item.id),
                cell(item.title or item.filename),
                cell(item.content_type),
                cell(file_size(item.size_bytes)),
                cell(_seconds(item.duration_seconds)),
                cell(_frame(item)),
                cell(item.created_at),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(item.id, item.title or item.filename),
            cell(file_size(item.size_bytes)),
            cell(_seconds(item.duration_seconds)),
            moment(item.created_at),
        ]
        for item in page
    ]
    columns = [
        Column("Asset: title"),
        Column("Size", right=True),
        Column("Length", right=True, optional=True),
        Column("Created", optional=True),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows))


def asset(data: MediaAsset) -> RenderableType:
    """One media asset in full."""
    rows: list[tuple[str, RenderableType]] = [
        ("Title", cell(data.title)),
        ("File", cell(data.filename)),
        ("Type", cell(data.content_type)),
        ("Size", cell(file_size(data.size_bytes))),
        ("Length", cell(_seconds(data.duration_seconds))),
        ("Frame", cell(_frame(data))),
        ("Source", cell(data.source_type)),
        ("Source job", cell(data.source_job_id)),
        ("Tags", cell(", ".join(data.tags))),
        ("Created", cell(data.created_at)),
        ("URL", cell("below")),
    ]
    panel = Panel(fields(rows), title=f"Asset {data.id}", title_align="left", expand=False)
    # Outside the panel and unwrapped, as a job's: a URL folded between borders cannot be
    # copied whole.
    return Group(panel, Text(data.url, no_wrap=True, overflow="ignore"))


def credits(data: Credits) -> RenderableType:
    """The balance and the ledger."""
    summary = fields(
        [
            (
                "Available",
                Text(
                    f"{number(data.available)} (${data.available * data.credit_value_usd:.2f})",
                    style="bold green",
                ),
            ),
            ("Held", cell(number(data.held))),
            ("Balance", cell(number(data.balance))),
            ("1 credit", cell(_usd(data.credit_value_usd))),
        ]
    )

    def wide() -> Table:
        ledger = Table(box=box.SIMPLE_HEAD, title="Ledger", title_justify="left")
        ledger.add_column("When")
        ledger.add_column("Kind")
        ledger.add_column("Amount", justify="right")
        ledger.add_column("Job (or batch)", no_wrap=True)
        for entry in data.entries:
            ledger.add_row(
                cell(entry.created_at),
                cell(entry.kind),
                cell(number(entry.amount)),
                cell(entry.job_id or (entry.batch_id and f"batch {entry.batch_id}")),
            )
        return ledger

    rows: list[list[RenderableType]] = [
        [
            Identified(entry.job_id or entry.batch_id or "—"),
            moment(entry.created_at),
            cell(f"batch {entry.kind}" if entry.job_id is None and entry.batch_id else entry.kind),
            cell(number(entry.amount)),
        ]
        for entry in data.entries
    ]
    columns = [
        Column("Job (or batch)"),
        Column("When", optional=True),
        Column("Kind"),
        Column("Amount", right=True),
    ]
    narrow = narrow_layouts(columns, rows, title="Ledger", title_justify="left")
    return Group(summary, Fitted(wide, *narrow))


def usage(data: Usage) -> RenderableType:
    """Charges and provider costs per group, with their totals."""
    by_key = data.group_by == "key"
    label = {"model": "Model", "day": "Day (UTC)", "key": "API key: its first characters"}[
        data.group_by
    ]
    options: dict[str, Any] = {
        "show_footer": True,
        "title": f"Usage {data.start:%Y-%m-%d %H:%M} to {data.end:%Y-%m-%d %H:%M} UTC",
        "title_justify": "left",
        "caption": "Charged: captures minus refunds, in credits; cost: what the provider billed. "
        f"1 credit = {_usd(data.credit_value_usd)}.",
        "caption_justify": "left",
    }
    totals = data.totals
    # A key's id, what a key's budget names (`naive budgets set --key-id`), above the first
    # characters of the key itself, which tell a person which key it is.
    groups = [row.group for row in data.rows]
    notes = [row.key_prefix if by_key else None for row in data.rows]

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD, **options)
        table.add_column("API key (id)" if by_key else label, "Total", no_wrap=True)
        if by_key:
            table.add_column("Key starts")
        table.add_column("Jobs", number(totals.jobs), justify="right")
        table.add_column("Charged (credits)", number(totals.charged_credits), justify="right")
        table.add_column("Provider units", number(totals.provider_units), justify="right")
        table.add_column("Provider cost", _cost(totals.provider_cost_usd), justify="right")
        for group, note, row in zip(groups, notes, data.rows, strict=True):
            table.add_row(
                cell(group if group is not None else "(none)"),
                *([cell(note)] if by_key else []),
                cell(number(row.jobs)),
                cell(number(row.charged_credits)),
                cell(number(row.provider_units)),
                cell(_cost(row.provider_cost_usd)),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(group if group is not None else "(none)", note),
            cell(number(row.jobs)),
            cell(number(row.charged_credits)),
            cell(_cost(row.provider_cost_usd)),
            cell(number(row.provider_units)),
        ]
        for group, note, row in zip(groups, notes, data.rows, strict=True)
    ]
    columns = [
        Column(label, footer="Total"),
        Column("Jobs", right=True, footer=number(totals.jobs)),
        Column("Charged", right=True, footer=number(totals.charged_credits)),
        Column("Cost", right=True, footer=_cost(totals.provider_cost_usd)),
        Column("Units", right=True, optional=True, footer=number(totals.provider_units)),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows, **options))


def _cost(value: float) -> str:
    """Dollars to the cent, or to the millionth when below a cent."""
    return f"${value:.2f}" if value == 0 or abs(value) >= 0.01 else f"${value:.6f}"


def _credits(data: Job, *, short: bool = False) -> str:
    """Credits used once known, nothing for a job that failed or was cancelled (its hold
    is released), else the estimate (`~3.5`, and `(est.)` unless `short`)."""
    if data.credits_used is not None:
        return number(data.credits_used)
    if data.status.is_final:
        return "0"
    return f"~{number(data.estimated_credits)}" + ("" if short else " (est.)")


def _usd(value: Any) -> str:
    return f"${value:.2f}" if isinstance(value, int | float) else "—"


def _seconds(value: Any) -> str | None:
    return f"{value:g} s" if isinstance(value, int | float) else None


def _frame(data: MediaAsset) -> str | None:
    return f"{data.width}×{data.height}" if data.width and data.height else None


def webhook_status(data: Webhook) -> Text:
    """`enabled`, or `disabled` in red with the reason: nothing is sent to it until
    `naive webhooks enable`."""
    if data.status == "enabled":
        return Text("enabled", style="green")
    reason = f": {data.disabled_reason}" if data.disabled_reason else ""
    return Text(f"disabled{reason}", style="red")


def webhook(data: Webhook) -> RenderableType:
    """One webhook subscription; its signing secret when just created (shown this once)."""
    rows: list[tuple[str, RenderableType]] = [
        ("Status", webhook_status(data)),
        ("URL", cell(data.url)),
        ("Events", cell(", ".join(data.events))),
        ("Description", cell(data.description)),
        ("Created", cell(data.created_at)),
    ]
    if isinstance(data, WebhookCreated):
        rows.append(("Secret", Text(data.secret, style="bold")))
    return Panel(fields(rows), title=f"Webhook {data.id}", title_align="left", expand=False)


def webhooks(data: Iterable[Webhook]) -> RenderableType:
    """The account's webhook subscriptions."""
    subscriptions = list(data)

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Webhook", no_wrap=True)
        table.add_column("URL", overflow="fold")
        table.add_column("Events", overflow="fold")
        table.add_column("Status", overflow="fold")
        table.add_column("Created", overflow="fold")
        for item in subscriptions:
            table.add_row(
                cell(item.id),
                cell(item.url),
                cell(", ".join(item.events)),
                webhook_status(item),
                cell(item.created_at),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(
                item.id,
                item.url,
                ", ".join(item.events),
                f"disabled: {item.disabled_reason or 'every attempt failed'}"
                if item.status == "disabled"
                else None,
            ),
            Text(item.status, style="green" if item.status == "enabled" else "red"),
            moment(item.created_at),
        ]
        for item in subscriptions
    ]
    columns = [
        Column("Webhook: URL, events"),
        Column("Status"),
        Column("Created", optional=True),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows))


def deliveries(data: Iterable[WebhookDelivery]) -> RenderableType:
    """A subscription's deliveries, newest first."""
    page = list(data)

    def last_answer(item: WebhookDelivery) -> str | None:
        answer = item.last_response_code if item.last_response_code else item.last_error
        latency = f" in {item.latency_ms} ms" if item.latency_ms is not None else ""
        return f"{answer}{latency}" if answer else None

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Delivery", no_wrap=True)
        table.add_column("Event")
        table.add_column("Job", overflow="fold")
        table.add_column("Status")
        table.add_column("Attempts", justify="right")
        table.add_column("Last answer", overflow="fold")
        table.add_column("Next attempt", overflow="fold")
        for item in page:
            table.add_row(
                cell(item.id),
                cell(f"{item.event} #{item.seq}"),
                cell(item.job_id),
                Text(item.status, style=DELIVERY_STYLES[item.status]),
                cell(item.attempts),
                cell(last_answer(item)),
                cell(item.next_attempt_at),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(
                item.id,
                f"{item.event} #{item.seq} of job",
                str(item.job_id),
                (answer := last_answer(item)) and f"last answer: {answer}",
            ),
            Text(item.status, style=DELIVERY_STYLES[item.status]),
            cell(item.attempts),
            moment(item.next_attempt_at),
        ]
        for item in page
    ]
    columns = [
        Column("Delivery: event, job, last answer"),
        Column("Status"),
        Column("Attempts", right=True),
        Column("Next attempt", optional=True),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows))


def batch_accepted(response: BatchAccepted) -> RenderableType:
    """The answer to a submitted batch."""
    return fields(
        [
            ("Batch", cell(response.batch_id)),
            ("Status", cell(response.status)),
            ("Items", cell(response.item_count)),
            ("Credits held", cell(number(response.estimated_credits))),
        ]
    )


def batch(data: Batch) -> RenderableType:
    """A batch: its totals, then its items."""
    counts = ", ".join(
        f"{name} {count}" for name, count in data.counts.model_dump().items() if count
    )
    summary = fields(
        [
            ("Batch", cell(data.id)),
            ("Status", cell(data.status)),
            ("Items", cell(f"{data.item_count} ({counts})")),
            (
                "Credits",
                cell(
                    f"{number(data.charged_credits)} charged of "
                    f"{number(data.estimated_credits)} held"
                ),
            ),
        ]
    )
    failed = [item for item in data.items if item.error is not None]
    if not failed:
        return Group(summary, jobs(data.items))
    reasons = Table(box=box.SIMPLE_HEAD, title="Why items failed", title_justify="left")
    reasons.add_column("Job", no_wrap=True)
    reasons.add_column("Error", overflow="fold")
    for item in failed:
        assert item.error is not None
        reasons.add_row(cell(item.id), cell(f"{item.error.code}: {item.error.message}"))
    return Group(summary, jobs(data.items), reasons)


def budgets(data: Iterable[Budget]) -> RenderableType:
    """Budgets and where their periods stand."""
    found = list(data)

    def wide() -> Table:
        table = Table(box=box.SIMPLE_HEAD)
        table.add_column("Budget", no_wrap=True)
        table.add_column("Scope")
        table.add_column("Period")
        table.add_column("Credits", justify="right")
        table.add_column("Spent", justify="right")
        table.add_column("Left", justify="right")
        for item in found:
            scope = "account" if item.key_id is None else f"key {item.key_id}"
            table.add_row(
                cell(item.id),
                cell(scope),
                cell(item.period),
                cell(number(item.credits)),
                cell(number(item.spent_credits)),
                cell(number(item.remaining_credits)),
            )
        return table

    rows: list[list[RenderableType]] = [
        [
            Identified(
                item.id, *(["account"] if item.key_id is None else ["key", str(item.key_id)])
            ),
            cell(item.period),
            cell(number(item.credits)),
            cell(number(item.spent_credits)),
            cell(number(item.remaining_credits)),
        ]
        for item in found
    ]
    columns = [
        Column("Budget: scope"),
        Column("Period"),
        Column("Credits", right=True),
        Column("Spent", right=True, optional=True),
        Column("Left", right=True),
    ]
    return Fitted(wide, *narrow_layouts(columns, rows))


def binding_quote(data: BindingQuote) -> RenderableType:
    """A binding quote."""
    return fields(
        [
            ("Quote", cell(data.quote_id)),
            ("Model", cell(data.model)),
            ("Credits", cell(number(data.estimated_credits))),
            ("Expires", cell(data.expires_at)),
        ]
    )
