"""Advice: hints that explain an outcome, and the concrete `naive` commands to run next."""

import re
import shlex
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import click

from services.cli.errors import ExitCode, Failure
from services.cli.numbers import number
from shared.errors import is_model_field
from shared.jobs.schemas import Job
from shared.jobs.status import PublicStatus

# A batch's item as `naive video batch` names it in a field: by its line in the file.
LINE_OF_ITEM = re.compile(r"^line \d+: ")


def command(*args: object) -> str:
    """A `naive` command line, quoted for a POSIX shell."""
    return shlex.join(["naive", *map(str, args)])


def command_names(ctx: click.Context | None) -> list[str]:
    """The names of the commands `ctx` runs, below `naive`: `["jobs", "watch"]`. Not taken
    from the command path, whose program part is `python -m services.cli.main` when run so."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(str(ctx.info_name))
        ctx = ctx.parent
    return names[::-1]


def flags(*pairs: tuple[str, object]) -> list[str]:
    """`--flag value` words for the options that are set, to repeat a filter in a next step."""
    return [str(word) for flag, value in pairs if value is not None for word in (flag, value)]


# A field whose option is not named after it.
OPTION_OF = {"source_type": "--source"}

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})

# The command groups whose ids a `list` shows: an id not found there is looked up in it.
LISTED = frozenset({"media", "webhooks", "budgets"})


@dataclass
class Advice:
    """What to tell the user after a failure."""

    hints: list[str] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)


def advise(
    failure: Failure,
    action: str,
    *,
    api_url: str,
    has_api_key: bool,
    help_step: str,
    options: Collection[str],
    model: str | None = None,
    duration: str | None = None,
) -> Advice:
    """Hints and next steps for `failure`, made concrete with what the command knew: its
    help (`help_step`) and its `options` (`--idempotency-key`, …) among them."""
    error, advice = failure.error, Advice()
    match failure.code:
        case "insufficient_credits":
            advice.hints.append(
                f"This job needs about {_amount(error.get('estimated_credits'))} credits; "
                f"you have {_amount(error.get('available_credits'))} available."
            )
            advice.next_steps += [
                command(
                    "video", "pricing", "--model", model or "MODEL", "--duration", duration or 5
                ),
                command("credits"),
            ]
            if hint := error.get("hint"):
                advice.hints.append(str(hint))
        case "budget_exceeded":
            budget = error.get("budget")
            period = budget.get("period") if isinstance(budget, dict) else None
            advice.hints.append(
                "A budget caps what is committed per period: wait for the next one, or raise "
                "it (an account's owner decides)."
            )
            advice.next_steps += [
                command("budgets", "list"),
                command("budgets", "set", "--period", period or "PERIOD", "--credits", "N"),
            ]
        case "quote_mismatch" | "quote_expired":
            advice.hints.append(
                "A quote prices one exact request (its model and input) until it expires: "
                "ask for a quote of this one, or submit without --quote-id at today's price."
            )
            advice.next_steps.append(
                command(
                    "video",
                    "quote",
                    "--model",
                    model or "MODEL",
                    "PROMPT",
                    *(["--duration", duration] if duration else []),
                )
            )
        case "invalid_model":
            if suggestions := error.get("suggestions"):
                advice.hints.append("Did you mean: " + ", ".join(map(str, suggestions)) + "?")
            if models_url := error.get("models_url"):
                advice.hints.append(f"The model catalog: {models_url}")
            advice.next_steps.append(command("video", "models"))
        case "invalid_input":
            fields = error.get("fields")
            _advise_fields(advice, fields if isinstance(fields, dict) else {}, help_step, options)
        case "unauthorized":
            if not has_api_key:
                advice.hints.append("No API key is set.")
            advice.hints.append(
                f"Set NAIVE_API_KEY (or pass --api-key) to a key issued by {api_url}; "
                "an operator creates keys with `naive admin`."
            )
        case "rate_limited":
            wait = f"{failure.retry_after:g} s" if failure.retry_after is not None else "a moment"
            advice.hints.append(f"Too many requests: retry in {wait}.")
        case "not_cancellable":
            advice.hints.append(
                f"The job is already {error.get('status', 'finished')}: only "
                f"{PublicStatus.QUEUED} or {PublicStatus.PROCESSING} jobs can be cancelled."
            )
            advice.next_steps.append(
                command("jobs", "--status", error.get("status", PublicStatus.COMPLETED))
            )
        case "idempotency_conflict":
            advice.hints.append(
                "This --idempotency-key was first used for a different request: reuse it only "
                "to retry the identical request, or pick a new key for a new video."
            )
            if job_id := error.get("job_id"):
                advice.next_steps.append(command("video", "status", job_id))
        case "not_found":
            advice.hints.append("Nothing with that id in this account.")
            group = action.split(".")[0]
            advice.next_steps.append(command(group, "list") if group in LISTED else command("jobs"))
        case "connection_error" | "timeout":
            local = urlsplit(api_url).hostname in LOOPBACK
            advice.hints.append(
                f"Is the API running at {api_url}? "
                + (
                    "`naive local up` starts the whole stack on this machine; "
                    if local
                    else "Start the stack (the api, worker and beat processes of the "
                    "repository's Procfile), "
                )
                + "or point NAIVE_API_URL / --api-url at a running API."
            )
            if local and failure.code == "connection_error":
                advice.next_steps += [command("local", "status"), command("local", "up")]
        case "interrupted" | "wait_timeout":
            job_id = error.get("job_id")
            advice.hints.append(
                "Credits are charged only if it completes; cancelling releases them."
            )
            advice.next_steps += [
                command("video", "status", job_id),
                command("jobs", "cancel", job_id),
            ]
        case "output_error" if asset_id := error.get("media_asset_id"):
            advice.hints.append("Nothing is lost: download it to a path you can write.")
            advice.next_steps += [
                command("media", "download", asset_id, "--output", "FILE"),
                command("video", "status", error.get("job_id")),
            ]
        case "database_unavailable":
            advice.hints.append(
                "`naive admin` uses DATABASE_URL when set, else the database of the local "
                "stack the other commands use (`naive local --help` says how it is found, "
                "`naive local status` shows where)."
            )
            if str(error.get("database_url", "")).startswith("sqlite"):
                advice.next_steps += [command("local", "status"), command("local", "up")]
        case "invalid_api_url":
            advice.hints.append("Example: export NAIVE_API_URL=http://127.0.0.1:8000")
        case _ if failure.exit_code is ExitCode.SERVICE_ERROR:
            advice.hints.append(
                "The service failed; retry shortly, and check its logs if it lasts."
            )
    return advice


def _advise_fields(
    advice: Advice, fields: dict[str, Any], help_step: str, options: Collection[str]
) -> None:
    """A hint per bad field, with the option that sets it; the models' parameters for a
    model or input field, the command's help for any other."""
    for name, problem in fields.items():
        parameter = name.removeprefix("input.")  # `input.duration` is set by --duration
        option = OPTION_OF.get(parameter, "--" + parameter.lower().replace("_", "-"))
        advice.hints.append(
            f"{name} ({option}): {problem}" if option in options else f"{name}: {problem}"
        )
    model_fields = [name for name in fields if is_model_field(LINE_OF_ITEM.sub("", name))]
    if model_fields:
        advice.hints.append(
            "`naive video models --json` lists each model's parameters, defaults and ranges."
        )
        advice.next_steps.append(command("video", "models", "--json"))
    if len(model_fields) < len(fields) or not fields:
        advice.next_steps.append(help_step)


def _amount(value: Any) -> str:
    """Credits as people write them: 1, not 1.0; 3.5."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return number(value)
    return "?" if value is None else str(value)


def job_next_steps(job: Job) -> list[str]:
    """What to run next for a job, by its status."""
    if not job.status.is_final and job.cancel_requested_at:
        return [command("video", "status", job.id)]
    if not job.status.is_final:
        return [command("video", "status", job.id), command("jobs", "cancel", job.id)]
    asset_id = job.result.media_asset_id if job.result else None
    if job.status is PublicStatus.COMPLETED and asset_id:
        return [command("media", "download", asset_id), command("media", "get", asset_id)]
    if job.status is PublicStatus.FAILED:
        return [command("video", "models")]
    return []


def job_hints(job: Job) -> list[str]:
    """What a person should know about a job, by its status."""
    if not job.status.is_final and job.cancel_requested_at:
        return [
            "Cancellation requested: the provider is stopping the job, and its hold is "
            "released once it has. If the provider delivers first, the video is kept and charged."
        ]
    if not job.status.is_final:
        return ["Credits are charged on completion only."]
    if job.status is PublicStatus.COMPLETED:
        return []
    hints = ["Nothing was charged: the credit hold was released."]
    if job.error and job.error.code == "provider_error":
        hints.append(
            "The provider could not make this video; the error's message says why. If it "
            "names a parameter, check it with `naive video models --json`; otherwise the "
            "same request may succeed when tried again."
        )
    return hints
