"""`naive video`: submit generations, follow them, and browse models and prices."""

import base64
import json
import re
from pathlib import Path
from typing import Any, get_args

import click

from services.cli import views
from services.cli.client import read, segment
from services.cli.errors import ExitCode, Failure
from services.cli.hints import command, flags, job_hints, job_next_steps
from services.cli.numbers import SECONDS
from services.cli.output import Reporter
from services.cli.state import State, json_option, pass_state
from services.cli.transfer import download, writable_output
from services.cli.wait import follow, until_batch_ends
from shared.batches.schemas import Batch, BatchAccepted
from shared.catalog.schemas import BindingQuote, ModelList, PriceQuote
from shared.errors import BATCH_ITEM
from shared.jobs.schemas import (
    IDEMPOTENCY_KEY_RULE,
    Job,
    JobAccepted,
    valid_idempotency_key,
)
from shared.jobs.status import PublicStatus
from shared.media.url_policy import image_type
from shared.webhooks.schemas import EventType
from shared.wire import instant

# A field of a batch's item, `items[1].input`: its name starts with the item's.
ITEM_FIELD = re.compile(rf"^{BATCH_ITEM.pattern}\.")


@click.group()
@json_option
def video() -> None:
    """Generate videos; list models, preview prices, check a job."""


def _model_input(named: dict[str, str | None], params: dict[str, Any]) -> dict[str, Any]:
    """The model's input: the options given, and the `--param`s (never both for one key)."""
    given = {key: value for key, value in named.items() if value is not None}
    if clash := sorted(given.keys() & params.keys()):
        raise click.BadParameter(
            f"{', '.join(clash)} given both as an option and as --param.", param_hint="--param"
        )
    return {**params, **given}


# A data: URL is base64 (4/3 of the file) in a body of at most MAX_REQUEST_BYTES (2 MiB).
MAX_IMAGE_FILE_BYTES = 1_500_000


def _image_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return _inline_image(value)


def _inline_image(value: str | None) -> str | None:
    """An https, http or data: URL as given; a local image file (a path, or a file: URL)
    sent inline as a data: URL, since the service cannot read this machine's files."""
    if value is None or value.startswith(("http://", "https://", "data:")):
        return value
    path = Path(value.removeprefix("file://")).expanduser()
    if not path.is_file():
        if "://" in value:
            return value  # another scheme: the API says which it takes
        raise click.BadParameter(
            f"{value!r} is neither an https/http/data: URL nor an image file here.",
            param_hint="'--image-url'",
        )
    with path.open("rb") as file:
        content = file.read(MAX_IMAGE_FILE_BYTES + 1)
    if len(content) > MAX_IMAGE_FILE_BYTES:
        raise click.BadParameter(
            f"{value} is over {MAX_IMAGE_FILE_BYTES / 1e6:g} MB, too large to send inline: "
            "put it at an https URL.",
            param_hint="'--image-url'",
        )
    mime = image_type(content[:12])
    if mime is None:
        raise click.BadParameter(
            f"{value} is not a JPEG, PNG, WebP or GIF image.", param_hint="'--image-url'"
        )
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def _parse_params(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> dict[str, Any]:
    """`KEY=VALUE` pairs; a VALUE that parses as JSON (5, 0.7, true, [..]) is sent as such."""
    params: dict[str, Any] = {}
    for item in values:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {item!r}.")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


@video.command()
@click.argument("prompt", required=False)
@click.option(
    "--model", "-m", required=True, help="Model id; see `naive video models`. There is no default."
)
@click.option("--duration", metavar="SECONDS", help="Video length, e.g. 5 or 10.")
@click.option("--aspect-ratio", metavar="RATIO", help="Output ratio, e.g. 16:9, 9:16, 1:1.")
@click.option(
    "--image-url",
    metavar="URL",
    callback=_image_url,
    help="Source image, for image-to-video models: an https URL, or an image file here "
    "(JPEG, PNG, WebP or GIF, up to 1.5 MB; sent inline as a data: URL).",
)
@click.option("--negative-prompt", metavar="TEXT", help="What to avoid in the video.")
@click.option(
    "--param",
    "params",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_parse_params,
    help="Any other model parameter (repeatable). VALUE is parsed as JSON when it parses "
    "(cfg_scale=0.7, generate_audio=false), else sent as a string.",
)
@click.option(
    "--metadata",
    "metadata",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_parse_params,
    help="Your own data kept on the job and copied into its events (repeatable); VALUE as "
    "for --param.",
)
@click.option(
    "--webhook-url",
    metavar="URL",
    help="Also send this job's events to URL, signed with a secret of its own (printed once).",
)
@click.option(
    "--webhook-event",
    "webhook_events",
    metavar="TYPE",
    multiple=True,
    type=click.Choice(list(get_args(EventType))),
    help="With --webhook-url: only this event type (repeatable; default every type).",
)
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Retry safely: the same key and request return the first job instead of a new one.",
)
@click.option(
    "--quote-id",
    metavar="ID",
    help="Charge a binding quote's price (`naive video quote` with the same model and input).",
)
@click.option("--wait", is_flag=True, help="Follow the job to its end and show the video's URL.")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(path_type=Path),
    callback=writable_output,
    help="Download the finished video to FILE, or into a folder under its own filename "
    "(implies --wait).",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=SECONDS,
    help="With --wait: give up waiting after SECONDS (the job keeps running).",
)
@json_option
@pass_state
def generate(
    state: State,
    prompt: str | None,
    model: str,
    duration: str | None,
    aspect_ratio: str | None,
    image_url: str | None,
    negative_prompt: str | None,
    params: dict[str, Any],
    metadata: dict[str, Any],
    webhook_url: str | None,
    webhook_events: tuple[str, ...],
    idempotency_key: str | None,
    quote_id: str | None,
    wait: bool,
    output: Path | None,
    timeout: float | None,
) -> None:
    """Submit a video job: from PROMPT, or animate --image-url; --wait to follow it.

    Only the options you give are sent; the server applies each model's defaults.
    Credits are held at submission and charged on completion only.

    \b
    Examples:
      naive video generate --model fal-ai/kling-video/v3/pro/text-to-video \\
          "A golden retriever running on a beach at sunset" --duration 5 --wait
      naive video generate --model fal-ai/kling-video/v3/pro/image-to-video \\
          --image-url https://example.com/photo.jpg "Slow zoom in" -o zoom.mp4
    """
    if not prompt and not image_url:
        raise click.UsageError("Give a PROMPT, or --image-url to animate an image.")
    wait = wait or output is not None
    if timeout is not None and not wait:
        raise click.UsageError("--timeout needs --wait or --output.")
    named = {
        "prompt": prompt,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "image_url": image_url,
        "negative_prompt": negative_prompt,
    }
    if webhook_events and not webhook_url:
        raise click.UsageError("--webhook-event needs --webhook-url.")
    body: dict[str, Any] = {"model": model, "input": _model_input(named, params)}
    if quote_id:
        body["quote_id"] = quote_id
    if metadata:
        body["metadata"] = metadata
    if webhook_url:
        body["webhook_url"] = webhook_url
        if webhook_events:
            body["webhook_events"] = list(webhook_events)
    with state.action("video.generate", model=model, duration=duration) as out:
        headers = _idempotency_headers(idempotency_key)
        answer, answer_headers = state.client.post_with_headers(
            "/v1/video/generate", body, headers=headers
        )
        accepted = read(JobAccepted, answer)
        job_id = str(accepted.job_id)
        replayed = answer_headers.get("Idempotent-Replayed", "").lower() == "true"
        replay_hint = (
            f"Replayed: --idempotency-key {idempotency_key} was used before, so this is the "
            "first job it made; nothing new was held or charged."
        )
        secret_hints = (
            [
                f"Webhook secret of this job (shown once, keep it with the job id): "
                f"{accepted.webhook_secret}. Verify each delivery with it (Standard Webhooks)."
            ]
            if accepted.webhook_secret
            else []
        )
        if not wait:
            out.success(
                accepted.model_dump(mode="json"),
                view=lambda: views.accepted(accepted),
                next_steps=[command("video", "status", job_id), command("jobs", "cancel", job_id)],
                hints=[
                    *([replay_hint] if replayed else []),
                    *secret_hints,
                    "Credits are charged on completion only.",
                ],
            )
            return
        if replayed:
            out.note(replay_hint)
        for hint in secret_hints:  # before the wait, which Ctrl-C may end
            out.note(hint)
        out.note(
            f"Job {job_id} {accepted.status}: about "
            f"{views.number(accepted.estimated_credits)} "
            f"credits, ~{views.number(accepted.estimated_seconds)} s. "
            "Ctrl-C stops waiting, not the job."
        )
        try:
            job = follow(
                state.client,
                job_id,
                timeout=timeout,
                console=None if out.json_mode else out.console,
            )
        except KeyboardInterrupt:
            raise Failure(
                {
                    "code": "interrupted",
                    "message": f"Stopped waiting; job {job_id} keeps running.",
                    "job_id": job_id,
                },
                ExitCode.INTERRUPTED,
            ) from None
        _finish(state, out, job, output, hints=secret_hints)


def _finish(
    state: State, out: Reporter, job: Job, output: Path | None, *, hints: list[str]
) -> None:
    """Report a job that ended: the video (downloaded to `output` if given), or why not;
    `hints` come first (a webhook secret: the JSON envelope's only place for it)."""
    job_id = job.id
    if job.status is not PublicStatus.COMPLETED:
        error = job.error
        reason = f": {error.message} [{error.code}]" if error else "."
        out.failure(
            job.model_dump(mode="json"),
            message=f"Job {job_id} {job.status}{reason}",
            next_steps=[command("video", "status", job_id), *job_next_steps(job)],
            hints=[*hints, *job_hints(job)],
        )
        raise click.exceptions.Exit(ExitCode.JOB_FAILED)
    hints = list(hints)
    if output is not None:
        url = job.result.video.url if job.result else None
        if not url:
            raise Failure(
                {"code": "no_video", "message": f"Job {job_id} {job.status} without a video URL."},
                ExitCode.SERVICE_ERROR,
            )
        try:
            if output.is_dir():
                output = output / _filename(state, job)
            size = download(
                state.client, url, output, console=None if out.json_mode else out.console
            )
        except Failure as failure:
            raise _not_saved(failure, job) from None
        hints.append(f"Saved {views.file_size(size)} to {output}")
    out.success(
        job.model_dump(mode="json"),
        view=lambda: views.finished_video(job),
        next_steps=job_next_steps(job),
        hints=hints,
    )


def _filename(state: State, job: Job) -> Path:
    """The finished video's own filename, as `naive media download` saves it."""
    from services.cli.media import local_name
    from shared.media.schemas import MediaAsset

    asset_id = str(job.result.media_asset_id) if job.result else ""
    return local_name(state.client.fetch(MediaAsset, f"/v1/media/{segment(asset_id)}"), asset_id)


def _not_saved(failure: Failure, job: Job) -> Failure:
    """The job completed (and was charged) but its video was not saved: the failure names
    the job and its media asset, which keeps the video, to download it again."""
    asset = job.result.media_asset_id if job.result else None
    asset_id = str(asset) if asset else None
    message = (
        f"{failure.error.get('message')} Job {job.id} completed; its video is kept in your "
        f"media library as {asset_id}."
    )
    error = {**failure.error, "message": message, "job_id": str(job.id), "media_asset_id": asset_id}
    return Failure(error, failure.exit_code)


@video.command()
@json_option
@pass_state
def models(state: State) -> None:
    """List the available models: mode, best use, price and typical time."""
    with state.action("video.models") as out:
        catalog = state.client.fetch(ModelList, "/v1/video/models")
        example = catalog.data[0].id if catalog.data else "MODEL"
        out.success(
            catalog.model_dump(mode="json"),
            view=lambda: views.models(catalog.data),
            next_steps=[
                command("video", "pricing", "--model", example, "--duration", 5),
                command("video", "generate", "--model", example, "PROMPT", "--wait"),
            ],
            hints=["`naive video models --json` adds each model's parameters, defaults, ranges."],
        )


@video.command("status")
@click.argument("job_id")
@json_option
@pass_state
def status_command(state: State, job_id: str) -> None:
    """Show a video job's status, progress and result."""
    with state.action("video.status") as out:
        job = state.client.fetch(Job, f"/v1/video/{segment(job_id)}")
        out.success(
            job.model_dump(mode="json"),
            view=lambda: views.job(job),
            next_steps=job_next_steps(job),
            hints=job_hints(job),
        )


@video.command()
@click.option("--model", "-m", required=True, help="Model id; see `naive video models`.")
@click.option(
    "--duration", metavar="SECONDS", help="Video length, e.g. 5 (the model's default if omitted)."
)
@json_option
@pass_state
def pricing(state: State, model: str, duration: str | None) -> None:
    """Preview what a video will cost, in credits, before generating it."""
    with state.action("video.pricing", model=model, duration=duration) as out:
        quote = state.client.fetch(
            PriceQuote, "/v1/video/pricing", {"model": model, "duration": duration}
        )
        # A model priced per video makes videos of one length and takes no `duration`.
        length = () if quote.unit == "video" else ("--duration", quote.duration)
        out.success(
            quote.model_dump(mode="json"),
            view=lambda: views.pricing(quote),
            next_steps=[
                command("video", "generate", "--model", model, "PROMPT", *length, "--wait"),
                command("credits"),
            ],
            hints=["Credits are charged on completion only; a failed job costs nothing."],
        )


def _read_items(path: Path) -> dict[int, dict[str, Any]]:
    """One item per non-empty line, each a JSON object `{model, input, metadata?}`, by its
    line number."""
    items = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        at = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise click.BadParameter(
            f"line {at}: not UTF-8 text (JSON Lines are UTF-8; byte {exc.start})."
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"line {number}: not JSON ({exc.msg}).") from None
        if not isinstance(item, dict):
            raise click.BadParameter(f"line {number}: expected a JSON object.")
        items[number] = item
    if not items:
        raise click.BadParameter(f"{path} has no items.")
    return items


@video.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="Retry safely: the same key and file return the first batch instead of a new one.",
)
@click.option("--wait", is_flag=True, help="Follow the batch until every item has ended.")
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=SECONDS,
    help="With --wait: give up waiting after SECONDS (the batch keeps running).",
)
@json_option
@pass_state
def batch(
    state: State, file: Path, idempotency_key: str | None, wait: bool, timeout: float | None
) -> None:
    """Submit every line of FILE (JSON Lines: {"model", "input", "metadata"?} each) as one
    batch, under one hold: all are accepted or none. Up to 100 items.

    \b
    Example (shots.jsonl):
      {"model": "fal-ai/kling-video/v3/pro/text-to-video", "input": {"prompt": "Dawn"}}
      {"model": "fal-ai/kling-video/v3/pro/text-to-video", "input": {"prompt": "Dusk"}}
      naive video batch shots.jsonl --wait
    """
    if timeout is not None and not wait:
        raise click.UsageError("--timeout needs --wait.")
    items = _read_items(file)
    with state.action("video.batch") as out:
        headers = _idempotency_headers(idempotency_key)
        try:
            answer = state.client.post(
                "/v1/video/batches", {"items": list(items.values())}, headers=headers
            )
        except Failure as failure:
            raise _by_line(failure, list(items)) from None
        accepted = read(BatchAccepted, answer)
        batch_id = str(accepted.batch_id)
        if not wait:
            out.success(
                accepted.model_dump(mode="json"),
                view=lambda: views.batch_accepted(accepted),
                next_steps=[command("video", "batch-status", batch_id)],
                hints=["Only completed items are charged; the others' share is released."],
            )
            return
        out.note(
            f"Batch {batch_id}: {accepted.item_count} items, "
            f"{views.number(accepted.estimated_credits)} credits held. Ctrl-C stops waiting."
        )
        _report_batch(out, until_batch_ends(state.client, batch_id, timeout))


def _report_batch(out: Reporter, shown: Batch) -> None:
    result = shown.model_dump(mode="json")
    steps = [command("video", "batch-status", str(shown.id))]
    if shown.status in ("completed", "processing"):
        out.success(result, view=lambda: views.batch(shown), next_steps=steps)
        return
    out.failure(
        result,
        message=f"Batch {shown.id} {shown.status}: {shown.counts.completed} of "
        f"{shown.item_count} items completed.",
        next_steps=steps,
    )
    raise click.exceptions.Exit(ExitCode.JOB_FAILED)


def _by_line(failure: Failure, lines: list[int]) -> Failure:
    """The API's refusal of items (`items[i]` or `items.i`, counted from 0) named by their
    lines in the file, as the CLI's own refusals are: in the message, `line 3 (items[1])`;
    in the fields, `line 3: input.duration` for `items[1].input.duration`."""

    def line(found: re.Match[str]) -> int | None:
        index = int(found[1] or found[2])
        return lines[index] if index < len(lines) else None

    def in_message(found: re.Match[str]) -> str:
        number = line(found)
        return found[0] if number is None else f"line {number} ({found[0]})"

    def in_field(found: re.Match[str]) -> str:
        number = line(found)
        return found[0] if number is None else f"line {number}: "

    message = BATCH_ITEM.sub(in_message, failure.error.get("message", ""))
    error = {**failure.error, "message": message}
    if isinstance(fields := error.get("fields"), dict):
        error["fields"] = {ITEM_FIELD.sub(in_field, name): text for name, text in fields.items()}
    return Failure(error, failure.exit_code, retry_after=failure.retry_after)


@video.command("batch-status")
@click.argument("batch_id")
@json_option
@pass_state
def batch_status(state: State, batch_id: str) -> None:
    """Show a batch: its status, counts by status and its items."""
    with state.action("video.batch-status") as out:
        shown = state.client.fetch(Batch, f"/v1/video/batches/{segment(batch_id)}")
        out.success(
            shown.model_dump(mode="json"),
            view=lambda: views.batch(shown),
            next_steps=[command("video", "status", str(job.id)) for job in shown.items[:3]],
        )


@video.command("batch-cancel")
@click.argument("batch_id")
@json_option
@pass_state
def batch_cancel(state: State, batch_id: str) -> None:
    """Cancel the items of a batch that have not started; their share of the hold is
    released. Items already at the provider run on (cancel each with `naive jobs cancel`)."""
    with state.action("video.batch-cancel") as out:
        before = state.client.fetch(Batch, f"/v1/video/batches/{segment(batch_id)}")
        shown = read(Batch, state.client.delete(f"/v1/video/batches/{segment(batch_id)}"))
        cancelled = shown.counts.cancelled - before.counts.cancelled
        running = [job for job in shown.items if job.status is PublicStatus.PROCESSING]
        out.success(
            shown.model_dump(mode="json"),
            view=lambda: views.batch(shown),
            next_steps=[command("jobs", "cancel", str(job.id)) for job in running[:3]],
            hints=[
                f"{cancelled} item(s) cancelled, their share released; {len(running)} already "
                "started and running on (each can be cancelled on its own)."
            ],
        )


@video.command()
@click.argument("prompt", required=False)
@click.option("--model", "-m", required=True, help="Model id; see `naive video models`.")
@click.option("--duration", metavar="SECONDS", help="Video length, e.g. 5 or 10.")
@click.option("--aspect-ratio", metavar="RATIO", help="Output ratio, e.g. 16:9.")
@click.option(
    "--image-url",
    metavar="URL",
    help="Source image, for image-to-video models: a URL or an image file, as for "
    "`naive video generate`.",
)
@click.option(
    "--param",
    "params",
    metavar="KEY=VALUE",
    multiple=True,
    callback=_parse_params,
    help="Any other model parameter (repeatable), as for `naive video generate`.",
)
@json_option
@pass_state
def quote(
    state: State,
    prompt: str | None,
    model: str,
    duration: str | None,
    aspect_ratio: str | None,
    image_url: str | None,
    params: dict[str, Any],
) -> None:
    """A binding quote: the price of exactly this request, held until it expires.

    Generate with the same model and input and `--quote-id` to be charged that price, even
    if the catalog's price changes meanwhile.
    """
    named = {
        "prompt": prompt,
        "duration": duration,
        "aspect_ratio": aspect_ratio,
        "image_url": _inline_image(image_url),  # the next step names the file, as given
    }
    body = {"model": model, "input": _model_input(named, params)}
    with state.action("video.quote", model=model, duration=duration) as out:
        issued = read(BindingQuote, state.client.post("/v1/video/quotes", body))
        same = [
            *([prompt] if prompt else []),
            *flags(
                ("--duration", duration),
                ("--aspect-ratio", aspect_ratio),
                ("--image-url", image_url),
            ),
            *(f"--param={key}={json.dumps(value)}" for key, value in params.items()),
        ]
        generate_again = ["generate", "--model", model, *same, "--quote-id", issued.quote_id]
        out.success(
            issued.model_dump(mode="json"),
            view=lambda: views.binding_quote(issued),
            next_steps=[command("video", *generate_again)],
            hints=[f"The price holds until {instant(issued.expires_at)}."],
        )


def _idempotency_headers(key: str | None) -> dict[str, str] | None:
    """The `Idempotency-Key` header of --idempotency-key, checked as the API checks it (an
    empty key is refused, not dropped: dropping it would make a new job on every retry)."""
    if key is None:
        return None
    if not valid_idempotency_key(key):
        error = {
            "code": "invalid_input",
            "message": "Bad Idempotency-Key.",
            "fields": {"Idempotency-Key": IDEMPOTENCY_KEY_RULE},
        }
        raise Failure(error, ExitCode.USER_ERROR)
    return {"Idempotency-Key": key}
