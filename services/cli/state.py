"""What every command shares: configuration, the API client, the output mode, error reporting."""

import contextlib
from collections.abc import Callable, Iterator
from functools import cached_property
from typing import Any, TypeVar

import click

from services.cli.client import ApiClient
from services.cli.errors import Failure
from services.cli.hints import advise, command, command_names
from services.cli.output import Reporter, wants_json

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """One invocation's settings, kept on the root click context."""

    def __init__(self, api_url: str, api_key: str | None, json_flag: bool) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.json_flag = json_flag

    @cached_property
    def client(self) -> ApiClient:
        """The API client, made on first use and closed when the command ends."""
        client = ApiClient(self.api_url, self.api_key)
        click.get_current_context().call_on_close(client.close)
        return client

    @contextlib.contextmanager
    def action(
        self, name: str, *, model: str | None = None, duration: str | None = None
    ) -> Iterator[Reporter]:
        """Run one command as action `name`: a `Failure` inside is reported and sets the exit
        code. `model` and `duration` make the recovery hints concrete."""
        reporter = Reporter(name, json_mode=wants_json(self.json_flag))
        try:
            yield reporter
        except Failure as failure:
            ctx = click.get_current_context()
            advice = advise(
                failure,
                name,
                api_url=self.api_url,
                has_api_key=bool(self.api_key),
                model=model,
                duration=duration,
                help_step=command(*command_names(ctx), "--help"),
                options=[option for param in ctx.command.params for option in param.opts],
            )
            reporter.failure(
                failure.error,
                message=f"{failure.error.get('message') or 'request failed'} [{failure.code}]",
                next_steps=advice.next_steps,
                hints=advice.hints,
            )
            raise click.exceptions.Exit(failure.exit_code) from None


pass_state = click.make_pass_decorator(State)


def _enable_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    state = ctx.find_object(State)
    if value and state is not None:
        state.json_flag = True


def json_option(command: F) -> F:
    """`--json` on a subcommand, the same as `naive --json`."""
    return _json_flag(
        command, "Print one JSON envelope (the default when stdout is not a terminal)."
    )


def json_lines_option(command: F) -> F:
    """`--json` on a command that streams events (its action is in `STREAMING_ACTIONS`)."""
    return _json_flag(
        command,
        "Print JSON Lines: a line per event, the envelope last "
        "(the default when stdout is not a terminal).",
    )


def _json_flag(command: F, help_text: str) -> F:
    return click.option(
        "--json", is_flag=True, expose_value=False, callback=_enable_json, help=help_text
    )(command)
