"""`naive video`: submit generations, follow them, and browse models and prices."""

import json
from pathlib import Path
from typing import Any

import click

from services.cli import views
from services.cli.client import read, segment
from services.cli.errors import ExitCode, Failure
from services.cli.hints import command, job_hints, job_next_steps
from services.cli.output import Reporter
from services.cli.state import State, json_option, pass_state
from services.cli.transfer import download
from services.cli.wait import follow
from shared.catalog.schemas import ModelList, PriceQuote
from shared.jobs.schemas import Job, JobAccepted
from shared.jobs.status import PublicStatus


@click.group()
@json_option
def video() -> None:
    """Generate videos; list models, preview prices, check a job."""


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
@click.option("--image-url", metavar="URL", help="Source image, for image-to-video models.")
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
    "--idempotency-key",
    metavar="KEY",
    help="Retry safely: the same key and request return the first job instead of a new one.",
)
@click.option("--wait", is_flag=True, help="Follow the job to its end and show the video's URL.")
@click.option(
    "--output",
    "-o",
    metavar="FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Download the finished video to FILE (implies --wait).",
)
@click.option(
    "--timeout",
    metavar="SECONDS",
    type=click.FloatRange(min=0, min_open=True),
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
    idempotency_key: str | None,
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
    given = {key: value for key, value in named.items() if value is not None}
    if clash := sorted(given.keys() & params.keys()):
        raise click.BadParameter(
            f"{', '.join(clash)} given both as an option and as --param.", param_hint="--param"
        )
    body = {"model": model, "input": {**params, **given}}
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None

    with state.action("video.generate", model=model, duration=duration) as out:
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
        if not wait:
            out.success(
                accepted.model_dump(mode="json"),
                view=lambda: views.accepted(accepted),
                next_steps=[command("video", "status", job_id), command("jobs", "cancel", job_id)],
                hints=[
                    *([replay_hint] if replayed else []),
                    "Credits are charged on completion only.",
                ],
            )
            return
        if replayed:
            out.note(replay_hint)
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
        _finish(state, out, job, output)


def _finish(state: State, out: Reporter, job: Job, output: Path | None) -> None:
    """Report a job that ended: the video (downloaded to `output` if given), or why not."""
    job_id = job.id
    if job.status is not PublicStatus.COMPLETED:
        error = job.error
        reason = f": {error.message} [{error.code}]" if error else "."
        out.failure(
            job.model_dump(mode="json"),
            message=f"Job {job_id} {job.status}{reason}",
            next_steps=[command("video", "status", job_id), *job_next_steps(job)],
            hints=job_hints(job),
        )
        raise click.exceptions.Exit(ExitCode.JOB_FAILED)
    hints = []
    if output is not None:
        url = job.result.video.url if job.result else None
        if not url:
            raise Failure(
                {"code": "no_video", "message": f"Job {job_id} {job.status} without a video URL."},
                ExitCode.SERVICE_ERROR,
            )
        size = download(state.client, url, output, console=None if out.json_mode else out.console)
        hints.append(f"Saved {views.file_size(size)} to {output}")
    out.success(
        job.model_dump(mode="json"),
        view=lambda: views.finished_video(job),
        next_steps=job_next_steps(job),
        hints=hints,
    )


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
        out.success(
            quote.model_dump(mode="json"),
            view=lambda: views.pricing(quote),
            next_steps=[
                command(
                    "video",
                    "generate",
                    "--model",
                    model,
                    "PROMPT",
                    "--duration",
                    quote.duration or duration or 5,
                    "--wait",
                ),
                command("credits"),
            ],
            hints=["Credits are charged on completion only; a failed job costs nothing."],
        )
