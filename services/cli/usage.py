"""`naive usage`: what the account was charged, and what the provider billed, in a range."""

import sys

import click

from services.cli import views
from services.cli.hints import command, flags
from services.cli.state import State, json_option, pass_state
from shared.ledger.schemas import Usage

GROUP_BYS = ["model", "day", "key"]


@click.command("usage")
@click.option(
    "--from",
    "start",
    metavar="DATE",
    help="Start, included: 2026-11-01 or 2026-11-01T12:00:00Z (UTC); default this month's 1st.",
)
@click.option(
    "--to", "end", metavar="DATE", help="End, excluded (as --from); default next month's 1st."
)
@click.option(
    "--group-by",
    type=click.Choice(GROUP_BYS),
    default="model",
    show_default=True,
    help="One row per model, per day (UTC) or per API key.",
)
@click.option(
    "--csv",
    "as_csv",
    is_flag=True,
    help="Print the API's CSV as it is (a header, a line per group, a total line), e.g. to "
    "redirect to a file; in any output mode.",
)
@json_option
@pass_state
def usage(state: State, start: str | None, end: str | None, group_by: str, as_csv: bool) -> None:
    """Show the credits charged and the provider's cost, per model, day or key.

    Charged is the ledger's captures minus refunds in the range, so the total is what your
    credits paid; provider units and cost are what the provider billed for those jobs.
    """
    params = {"from": start, "to": end, "group_by": group_by}
    with state.action("usage") as out:
        if as_csv:
            sys.stdout.write(state.client.get_text("/v1/usage", {**params, "format": "csv"}))
            sys.stdout.flush()
            return
        report = state.client.fetch(Usage, "/v1/usage", params)
        range_flags = flags(("--from", start), ("--to", end))
        others = [other for other in GROUP_BYS if other != group_by]
        hints = []
        if report.totals.jobs_without_units:
            hints.append(
                f"{report.totals.jobs_without_units} job(s) have no provider units: their "
                "provider reported none, so they are not in the provider's cost."
            )
        out.success(
            report.model_dump(mode="json", by_alias=True),
            view=lambda: views.usage(report),
            next_steps=[
                command("usage", *range_flags, "--group-by", others[0]),
                command("usage", *range_flags, "--group-by", group_by, "--csv"),
                *_key_budget_step(report),
            ],
            hints=hints,
        )


def _key_budget_step(report: Usage) -> list[str]:
    """By key: how to cap the first key's spending (a key's budget names its id, shown)."""
    key_ids = [row.group for row in report.rows if report.group_by == "key" and row.group]
    if not key_ids:
        return []
    return [
        command("budgets", "set", "--period", "month", "--credits", "N", "--key-id", key_ids[0])
    ]
