"""`naive budgets`: the most the account, or one of its keys, may commit per day or month."""

from decimal import Decimal

import click

from services.cli import views
from services.cli.client import read, segment
from services.cli.hints import command
from services.cli.numbers import DECIMAL
from services.cli.state import State, json_option, pass_state
from shared.budgets.schemas import Budget, BudgetList


@click.group()
@json_option
def budgets() -> None:
    """Cap what the account (or one key) commits per day or month; see what is spent."""


@budgets.command("list")
@json_option
@pass_state
def list_budgets(state: State) -> None:
    """The account's budgets, with what each period has spent and has left."""
    with state.action("budgets.list") as out:
        found = state.client.fetch(BudgetList, "/v1/budgets")
        out.success(
            found.model_dump(mode="json"),
            view=lambda: views.budgets(found.data),
            next_steps=[command("budgets", "set", "--period", "month", "--credits", "N")],
            hints=[]
            if found.data
            else ["No budgets yet: only the credits available limit what is submitted."],
        )


@budgets.command("set")
@click.option("--period", type=click.Choice(["day", "month"]), required=True)
@click.option("--credits", "credits_", type=DECIMAL, required=True, help="The most per period.")
@click.option(
    "--key-id",
    metavar="ID",
    help="Only this API key (default: the whole account); its id is printed by "
    "`naive admin create-account`, and `naive usage --group-by key` lists the keys charged.",
)
@json_option
@pass_state
def set_budget(state: State, period: str, credits_: Decimal, key_id: str | None) -> None:
    """Set (or replace) a budget; a submit over it is refused with budget_exceeded."""
    body = {
        "scope": "account" if key_id is None else "key",
        "key_id": key_id,
        "period": period,
        "credits": str(credits_),
    }
    with state.action("budgets.set") as out:
        saved = read(Budget, state.client.post("/v1/budgets", body))
        out.success(
            saved.model_dump(mode="json"),
            view=lambda: views.budgets([saved]),
            next_steps=[command("budgets", "list")],
        )


@budgets.command("delete")
@click.argument("budget_id")
@json_option
@pass_state
def delete_budget(state: State, budget_id: str) -> None:
    """Remove a budget."""
    with state.action("budgets.delete") as out:
        state.client.delete(f"/v1/budgets/{segment(budget_id)}")
        out.success({"id": budget_id, "deleted": True}, view=lambda: f"budget {budget_id} removed")
