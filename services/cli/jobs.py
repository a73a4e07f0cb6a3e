"""`naive jobs`: list the account's jobs, show one, watch one's events, cancel one."""

from collections.abc import Callable
from typing import Any, TypeVar

import click

from services.cli import views
from services.cli.client import read, segment
from services.cli.errors import ExitCode, Failure
from services.cli.hints import command, flags, job_hints, job_next_steps
from services.cli.numbers import SECONDS
from services.cli.state import State, json_lines_option, json_option, pass_state
from services.cli.wait import Update, watch
from shared.jobs.schemas import Job, JobPage
from shared.jobs.status import PublicStatus

STATUSES = [status.value for status in PublicStatus]
F = TypeVar("F", bound=Callable[..., Any])


def _filters(command: F) -> F:
    """The listing's options, on `naive jobs` and on `naive jobs list` alike."""
    for option in reversed(
        [
            click.option("--status", type=click.Choice(STATUSES), help="Only jobs in this status."),
            click.option(
                "--type",
                "job_type",
                metavar="TYPE",
                help="Only jobs of this type, e.g. video_generation.",
            ),
            click.option(
                "--limit", type=click.IntRange(min=1), metavar="N", help="At most N jobs."
            ),
            click.option(
                "--cursor", metavar="CURSOR", help="The next page, from a previous next_cursor."
            ),
        ]
    ):
        command = option(command)
    return command


@click.group(invoke_without_command=True)
@_filters
@json_option
@pass_state
@click.pass_context
def jobs(
    ctx: click.Context,
    state: State,
    status: str | None,
    job_type: str | None,
    limit: int | None,
    cursor: str | None,
) -> None:
    """List your jobs, newest first; `get`, `watch` or `cancel` one."""
    if ctx.invoked_subcommand is not None:
        return
    _list(state, status, job_type, limit, cursor)


@jobs.command("list")
@_filters
@json_option
@pass_state
def list_jobs(
    state: State, status: str | None, job_type: str | None, limit: int | None, cursor: str | None
) -> None:
    """The same as `naive jobs` (as `media list`, `webhooks list` and `budgets list`)."""
    _list(state, status, job_type, limit, cursor)


def _list(
    state: State, status: str | None, job_type: str | None, limit: int | None, cursor: str | None
) -> None:
    with state.action("jobs.list") as out:
        page = state.client.fetch(
            JobPage,
            "/v1/jobs",
            {"status": status, "type": job_type, "limit": limit, "cursor": cursor},
        )
        next_steps = []
        if page.has_more and page.next_cursor:
            filters = flags(("--status", status), ("--type", job_type), ("--limit", limit))
            next_steps.append(command("jobs", *filters, "--cursor", page.next_cursor))
        if page.data:
            next_steps.append(command("jobs", "get", page.data[0].id))
        else:
            next_steps.append(command("video", "generate", "--model", "MODEL", "PROMPT", "--wait"))
        out.success(
            page.model_dump(mode="json"),
            view=lambda: views.jobs(page.data),
            next_steps=next_steps,
            hints=[] if page.data else ["No jobs match."],
        )


@jobs.command("get")
@click.argument("job_id")
@json_option
@pass_state
def get_job(state: State, job_id: str) -> None:
    """Show one job: status, progress, result or error."""
    with state.action("jobs.get") as out:
        job = state.client.fetch(Job, f"/v1/jobs/{segment(job_id)}")
        out.success(
            job.model_dump(mode="json"),
            view=lambda: views.job(job),
            next_steps=job_next_steps(job),
            hints=job_hints(job),
        )


@jobs.command("watch")
@click.argument("job_id")
@click.option(
    "--timeout",
    type=SECONDS,
    metavar="SECONDS",
    help="Give up watching after SECONDS (the job keeps running).",
)
@json_lines_option
@pass_state
def watch_job(state: State, job_id: str, timeout: float | None) -> None:
    """Follow a job's events as they happen, until it ends (exit 4 if it fails or is cancelled).

    \b
    With --json, or when stdout is not a terminal: JSON Lines, every line one JSON object.
    One line per event ({id, type, timestamp, data: the job}), then, always last, the
    envelope on one line: the final job, or the error that ended the watch. Reads the job's
    event stream, resuming after a dropped connection; polls the job where the API has no
    stream.
    """
    with state.action("jobs.watch") as out:

        def show(update: Update) -> None:
            out.item(update.as_json(), view=lambda: views.event(update))

        try:
            job = watch(state.client, job_id, timeout=timeout, on_update=show)
        except KeyboardInterrupt:
            raise Failure(
                {
                    "code": "interrupted",
                    "message": f"Stopped watching; job {job_id} keeps running.",
                    "job_id": job_id,
                },
                ExitCode.INTERRUPTED,
            ) from None
        if job.status is not PublicStatus.COMPLETED:
            error = job.error
            out.failure(
                job.model_dump(mode="json"),
                message=f"Job {job.id} {job.status}"
                + (f": {error.message} [{error.code}]" if error else "."),
                next_steps=job_next_steps(job),
                hints=job_hints(job),
            )
            raise click.exceptions.Exit(ExitCode.JOB_FAILED)
        out.success(
            job.model_dump(mode="json"),
            view=lambda: views.finished_video(job),
            next_steps=job_next_steps(job),
        )


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@pass_state
def cancel_job(state: State, job_id: str) -> None:
    """Cancel a queued or processing job; its credit hold is released."""
    with state.action("jobs.cancel") as out:
        job = read(Job, state.client.delete(f"/v1/jobs/{segment(job_id)}"))
        # A job at the provider is not cancelled yet, only asked to stop: say which.
        next_steps = (
            [command("jobs", "--status", PublicStatus.CANCELLED)]
            if job.status is PublicStatus.CANCELLED
            else job_next_steps(job)
        )
        out.success(
            job.model_dump(mode="json"),
            view=lambda: views.job(job),
            next_steps=next_steps,
            hints=job_hints(job),
        )
