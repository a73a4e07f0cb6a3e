"""The `naive` command: the root group, its options, and the registration of every command."""

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click
from click.core import ParameterSource

from services.cli import views
from services.cli.budgets import budgets
from services.cli.client import DEFAULT_API_URL
from services.cli.errors import ExitCode
from services.cli.hints import command, command_names, flags
from services.cli.jobs import jobs
from services.cli.media import media
from services.cli.output import Reporter, wants_json
from services.cli.state import State, json_option, pass_state
from services.cli.usage import usage
from services.cli.video import video
from services.cli.webhooks import webhooks
from shared.ledger.schemas import Credits

EPILOG = """\b
Commands at a glance:
  naive video models                              models, modes, prices
  naive video pricing --model M --duration 5      a video's cost in credits
  naive video generate --model M "PROMPT" --wait  generate a video, follow it
  naive video status ID                           a video job's status, result
  naive video quote --model M "PROMPT"            a binding price (--quote-id)
  naive video batch FILE.jsonl [--wait]           up to 100 jobs, one hold
  naive jobs [--status S]                         your jobs, newest first
  naive jobs get ID | naive jobs cancel ID        one job; cancel it
  naive jobs watch ID                             follow a job's events
  naive media list --source video_generation      your media library
  naive media get ID | naive media download ID    one asset; download its file
  naive credits                                   balance, holds and ledger
  naive budgets set --period P --credits N        cap what the account commits
  naive budgets list | naive budgets delete ID    budgets, with what is spent
  naive usage [--group-by model|day|key] [--csv]  charges and provider costs
  naive webhooks create --url URL [--event E]     job events sent to your URL
  naive webhooks list | get ID | enable ID        subscriptions; turn one on
  naive webhooks deliveries ID | redeliver ID     what was sent; send it again
  naive local up | naive local down               the stack on this machine
  naive mcp [--budget 20]                         agent tools (MCP)
  naive admin --help                              operator commands (database)
Add --help to any command for its options.

\b
Exit codes:
  0    success
  2    user error: bad usage, or the API refused the request (any 4xx)
  3    service error: a 5xx, no connection, or a request or --timeout ran out
  4    the job ended failed or cancelled (with --wait, or jobs watch)
  130  interrupted (Ctrl-C)
"""


# Commands whose modules are heavy (the database layer, the MCP SDK) load when they run, so
# `naive video status ID` does not pay for SQLAlchemy, Alembic and Starlette at every start.
LAZY_COMMANDS = {
    "admin": "services.cli.admin:admin",
    "local": "services.cli.local:local",
    "mcp": "services.cli.mcp_command:mcp",
}


class NaiveGroup(click.Group):
    """The root group: usage errors and Ctrl-C get the JSON envelope too, and exit 2 or 130."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command, the lazily loaded ones included."""
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """A registered command, or a lazy one imported now."""
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module_name, attribute = LAZY_COMMANDS[cmd_name].split(":")
            self.add_command(getattr(importlib.import_module(module_name), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """Run the CLI; click's own errors are reported in the active output mode."""
        argv = list(sys.argv[1:] if args is None else args)
        json_mode = wants_json("--json" in argv)
        try:
            code = super().main(argv, prog_name, complete_var, standalone_mode=False, **extra)
        except click.ClickException as exc:
            ctx = getattr(exc, "ctx", None)
            path = ctx.command_path if ctx is not None else "naive"
            if json_mode:
                Reporter(_action(ctx), json_mode=True).failure(
                    {"code": "usage_error", "message": exc.format_message()},
                    message=exc.format_message(),
                    next_steps=[f"{path} --help"],
                )
            else:
                exc.show()
            code = ExitCode.USER_ERROR
        except click.Abort:
            if json_mode:
                Reporter("naive", json_mode=True).failure(
                    {"code": "interrupted", "message": "Interrupted."}, message="Interrupted."
                )
            else:
                click.echo("Interrupted.", err=True)
            code = ExitCode.INTERRUPTED
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _action(ctx: click.Context | None) -> str:
    """`naive video generate` → `video.generate`."""
    return ".".join(command_names(ctx)) or "naive"


@click.group(
    cls=NaiveGroup,
    epilog=EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--api-url",
    envvar="NAIVE_API_URL",
    default=DEFAULT_API_URL,
    show_default=True,
    show_envvar=True,
    help="The Naive API's base URL.",
)
@click.option(
    "--api-key",
    envvar="NAIVE_API_KEY",
    show_envvar=True,
    help="Your API key (nv_sk_…), sent as `Authorization: Bearer`.",
)
@click.option(
    "--json",
    "json_flag",
    is_flag=True,
    help="Print one JSON envelope {success, action, result, next_steps, hints}; "
    "the default when stdout is not a terminal. Also accepted after any command.",
)
@click.version_option(package_name="naive-video", prog_name="naive")
@click.pass_context
def cli(ctx: click.Context, api_url: str, api_key: str | None, json_flag: bool) -> None:
    """Naive Video: generate videos with AI models, follow the jobs, keep the results.

    A thin client of the Naive HTTP API. At a terminal it prints tables; with --json, or when
    stdout is not a terminal, it prints exactly one JSON envelope for scripts and agents.
    """
    url_given = ctx.get_parameter_source("api_url") != ParameterSource.DEFAULT
    if (api_key is None or not url_given) and (stack := _local_stack()):
        # `naive local up` made a stack here: talk to it unless given another URL, with its
        # key unless given one. Its key goes to it only, never to another URL.
        stack_url = str(stack.get("api_url", DEFAULT_API_URL))
        if not url_given:
            api_url = stack_url
        if api_key is None and api_url.rstrip("/") == stack_url.rstrip("/"):
            api_key = stack.get("api_key")
    ctx.obj = State(api_url, api_key, json_flag)


def _local_stack() -> dict[str, Any] | None:
    """What `naive local up` recorded, read only when it could matter (its module is heavy)."""
    from services.cli.local import read_local_stack

    return read_local_stack()


@cli.command("credits")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="At most N ledger entries.")
@click.option("--cursor", metavar="CURSOR", help="The next page, from a previous next_cursor.")
@json_option
@pass_state
def credits_command(state: State, limit: int | None, cursor: str | None) -> None:
    """Show your credit balance, what is held for running jobs, and the ledger, newest
    first."""
    with state.action("credits") as out:
        balance = state.client.fetch(Credits, "/v1/credits", {"limit": limit, "cursor": cursor})
        next_steps = []
        if balance.has_more and balance.next_cursor:
            more = flags(("--limit", limit))
            next_steps.append(command("credits", *more, "--cursor", balance.next_cursor))
        next_steps.append(command("video", "pricing", "--model", "MODEL", "--duration", 5))
        out.success(
            balance.model_dump(mode="json"),
            view=lambda: views.credits(balance),
            next_steps=next_steps,
            hints=["Held credits are released when a job fails or is cancelled."],
        )


cli.add_command(video)
cli.add_command(jobs)
cli.add_command(media)
cli.add_command(webhooks)
cli.add_command(budgets)
cli.add_command(usage)


if __name__ == "__main__":
    cli()
