"""`naive admin`: operator commands that talk to the database directly.

Their database is DATABASE_URL's when it is set, else that of the local stack the other
commands talk to (`services.cli.local.stack_path`), from any working directory.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import click
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from services.cli.errors import ExitCode, Failure
from services.cli.local import stack_settings
from services.cli.numbers import DECIMAL, number
from services.cli.output import Reporter, wants_json
from services.cli.state import State, json_option, pass_state
from shared import accounts
from shared.budgets import service as budgets
from shared.budgets.schemas import BudgetSet
from shared.catalog import sync as catalog_sync
from shared.db import Database, utcnow
from shared.errors import InvalidInput, NotFound
from shared.ledger import service as ledger
from shared.ledger.schemas import CreditGrant, CreditsGranted
from shared.migrate import upgrade


def _unavailable(url: str, reason: str) -> Failure:
    """The failure of a database that cannot be opened, its URL without a password."""
    shown = make_url(url).render_as_string(hide_password=True)
    return Failure(
        {
            "code": "database_unavailable",
            "message": f"Cannot open the database {shown}: {reason.strip()}",
            "database_url": shown,
        },
        ExitCode.SERVICE_ERROR,
    )


@contextlib.contextmanager
def _reported(url: str) -> Iterator[None]:
    """A database that cannot be opened (or reached) is a `database_unavailable` failure."""
    try:
        yield
    except OperationalError as exc:
        raise _unavailable(url, str(exc.orig)) from None


@contextlib.contextmanager
def _database() -> Iterator[Database]:
    """The admin commands' database, which must exist: a SQLite file that does not is
    reported, not made empty (only `naive admin migrate` makes one)."""
    url = stack_settings().database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        raise _unavailable(url, "no such file (`naive local up` makes the local stack's)")
    db = Database(url)
    try:
        with _reported(url):
            yield db
    finally:
        db.dispose()


@click.group()
def admin() -> None:
    """Operator commands: migrations and accounts (direct database access).

    \b
    The database is DATABASE_URL's when set, else the local stack's that the other commands
    find (`naive local --help` says how; `naive local status` shows where).
    """


@admin.command()
@pass_state
def migrate(state: State) -> None:
    """Run the database migrations to the newest version."""
    settings = stack_settings()
    with state.action("admin.migrate"), _reported(settings.database_url):
        settings.ensure_local_dirs()
        upgrade(settings.database_url)
    click.echo("database is at the newest migration", err=True)


@admin.command("create-account")
@click.option("--name", required=True, help="Who the account is for.")
@click.option(
    "--credits",
    "credits_",
    type=DECIMAL,
    default=None,
    help="Starting grant (default NEW_ACCOUNT_CREDITS, 100).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print {account_id, api_key, key_id} as JSON."
)
@pass_state
def create_account(state: State, name: str, credits_: Decimal | None, as_json: bool) -> None:
    """Create an account and its first API key; the key is shown once, with its id (a
    key's budget names it: `naive budgets set --key-id ID`)."""
    state.json_flag = state.json_flag or as_json  # a failure is an envelope then
    if not name.strip() or len(name) > 200:  # the column's size
        raise click.BadParameter("must be 1 to 200 characters, not blank.", param_hint="'--name'")
    grant = stack_settings().new_account_credits if credits_ is None else credits_
    if credits_ is not None and credits_ < 0:
        raise click.BadParameter("must not be negative.", param_hint="'--credits'")
    if credits_ is not None and credits_ != 0:
        try:  # bounded as a grant is (a negative one was dropped without a word)
            CreditGrant.model_validate({"credits": credits_})
        except ValidationError as exc:
            problems = "; ".join(e["msg"] for e in exc.errors())
            raise click.BadParameter(problems, param_hint="'--credits'") from None
    with state.action("admin.create-account"), _database() as db, db.transaction() as session:
        created = accounts.create_account(session=session, name=name, credits=grant)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "account_id": str(created.account_id),
                    "api_key": created.api_key,
                    "key_id": str(created.key_id),
                }
            )
        )
    else:
        click.echo(f"account {created.account_id} with {grant} credits")
        click.echo(f"API key (shown once): {created.api_key}")
        click.echo(f"its id (for --key-id): {created.key_id}")


@admin.command("grant-credits")
@click.option("--account", "account_id", type=click.UUID, required=True, help="The account's id.")
@click.option("--credits", "credits_", type=DECIMAL, required=True, help="Credits to add.")
@click.option("--note", default=None, help="Kept on the ledger entry.")
@json_option
@pass_state
def grant_credits(state: State, account_id: uuid.UUID, credits_: Decimal, note: str | None) -> None:
    """Top up an account: a `topup` ledger entry (as POST /v1/admin/accounts/{id}/credits)."""
    try:
        grant = CreditGrant.model_validate(
            {"credits": credits_} if note is None else {"credits": credits_, "note": note}
        )
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(problems) from None
    try:
        with (
            state.action("admin.grant-credits"),
            _database() as db,
            db.transaction() as session,
        ):
            entry, totals = ledger.grant(
                session=session, account_id=account_id, credits=grant.credits, note=grant.note
            )
            granted = CreditsGranted.of(account_id, entry, totals)
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    message = (
        f"granted {grant.credits} credits to account {account_id}: "
        f"balance {number(granted.balance)}, available {number(granted.available)}"
    )
    Reporter("admin.grant-credits", json_mode=wants_json(state.json_flag)).success(
        granted.model_dump(mode="json"), view=lambda: message
    )


@admin.command("set-scheduling")
@click.option("--account", "account_id", type=click.UUID, required=True, help="The account's id.")
@click.option(
    "--concurrency-cap",
    type=click.IntRange(min=1),
    default=None,
    help="At most this many of its jobs at the provider at once (omit: no cap of its own).",
)
@click.option(
    "--weight",
    type=click.IntRange(min=1),
    default=None,
    help="Its share of a busy provider relative to other accounts (default 1).",
)
@json_option
@pass_state
def set_scheduling(
    state: State, account_id: uuid.UUID, concurrency_cap: int | None, weight: int | None
) -> None:
    """Set an account's own concurrency cap and its weight in the fair scheduler."""
    try:
        with (
            state.action("admin.set-scheduling"),
            _database() as db,
            db.transaction() as session,
        ):
            account = accounts.set_scheduling(
                session=session,
                account_id=account_id,
                concurrency_cap=concurrency_cap,
                weight=weight,
            )
            result = {
                "account_id": str(account.id),
                "concurrency_cap": account.concurrency_cap,
                "scheduling_weight": account.scheduling_weight,
            }
    except NotFound as exc:
        raise click.ClickException(exc.message) from None
    cap = result["concurrency_cap"] or "none"
    message = f"account {account_id}: concurrency cap {cap}, weight {result['scheduling_weight']}"
    Reporter("admin.set-scheduling", json_mode=wants_json(state.json_flag)).success(
        result, view=lambda: message
    )


@admin.command("set-budget")
@click.option("--account", "account_id", type=click.UUID, required=True, help="The account's id.")
@click.option(
    "--key-id", type=click.UUID, default=None, help="Limit this key only (default: every key)."
)
@click.option("--period", type=click.Choice(["day", "month"]), required=True)
@click.option("--credits", "credits_", type=DECIMAL, required=True, help="The most per period.")
@json_option
@pass_state
def set_budget(
    state: State, account_id: uuid.UUID, key_id: uuid.UUID | None, period: str, credits_: Decimal
) -> None:
    """Set an account's (or one key's) budget per day or month, as POST /v1/budgets does."""
    try:
        request = BudgetSet.model_validate(
            {
                "scope": "account" if key_id is None else "key",
                "key_id": key_id,
                "period": period,
                "credits": credits_,
            }
        )
    except ValidationError as exc:
        raise click.UsageError("; ".join(error["msg"] for error in exc.errors())) from None
    try:
        with (
            state.action("admin.set-budget"),
            _database() as db,
            db.transaction() as session,
        ):
            ledger.lock_account(session=session, account_id=account_id)
            saved = budgets.set_budget(session=session, account_id=account_id, request=request)
            view = budgets.view(session=session, budget=saved.budget, now=utcnow())
    except (NotFound, InvalidInput) as exc:
        raise click.ClickException(exc.message) from None
    scope = "account" if key_id is None else f"key {key_id}"
    message = (
        f"{scope} of {account_id}: {number(view.credits)} credits per {period}, "
        f"{number(view.spent_credits)} spent this {period}"
    )
    Reporter("admin.set-budget", json_mode=wants_json(state.json_flag)).success(
        view.model_dump(mode="json"), view=lambda: message
    )


@admin.command("refresh-catalog")
@pass_state
def refresh_catalog(state: State) -> None:
    """Fetch model listings and prices from fal's platform API now."""
    settings = stack_settings()
    if not settings.fal_key:
        raise click.ClickException("FAL_KEY is not set: the built-in catalog is in force")
    try:
        with (
            state.action("admin.refresh-catalog"),
            _database() as db,
            db.transaction() as session,
        ):
            count = catalog_sync.refresh(session=session, settings=settings)
    except catalog_sync.CatalogUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{count} models priced by the platform", err=True)
