"""`naive admin`: operator commands that talk to the database directly."""

from __future__ import annotations

import json
from decimal import Decimal

import click

from shared import accounts
from shared.catalog import sync as catalog_sync
from shared.config import load_settings
from shared.db import Database
from shared.migrate import upgrade


@click.group()
def admin() -> None:
    """Operator commands: migrations and accounts (direct database access)."""


@admin.command()
def migrate() -> None:
    """Run the database migrations to the newest version."""
    settings = load_settings()
    settings.ensure_local_dirs()
    upgrade(settings.database_url)
    click.echo("database is at the newest migration", err=True)


@admin.command("create-account")
@click.option("--name", required=True, help="Who the account is for.")
@click.option(
    "--credits",
    "credits_",
    type=Decimal,
    default=None,
    help="Starting grant (default NEW_ACCOUNT_CREDITS, 100).",
)
@click.option("--json", "as_json", is_flag=True, help="Print {account_id, api_key} as JSON.")
def create_account(name: str, credits_: Decimal | None, as_json: bool) -> None:
    """Create an account and its first API key; the key is shown once."""
    settings = load_settings()
    db = Database(settings.database_url)
    grant = settings.new_account_credits if credits_ is None else credits_
    with db.transaction() as session:
        created = accounts.create_account(session=session, name=name, credits=grant)
    if as_json:
        click.echo(json.dumps({"account_id": str(created.account_id), "api_key": created.api_key}))
    else:
        click.echo(f"account {created.account_id} with {grant} credits")
        click.echo(f"API key (shown once): {created.api_key}")
    db.dispose()


@admin.command("refresh-catalog")
def refresh_catalog() -> None:
    """Fetch model listings and prices from fal's platform API now."""
    settings = load_settings()
    if not settings.fal_key:
        raise click.ClickException("FAL_KEY is not set: the built-in catalog is in force")
    db = Database(settings.database_url)
    try:
        with db.transaction() as session:
            count = catalog_sync.refresh(session=session, settings=settings)
    except catalog_sync.CatalogUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        db.dispose()
    click.echo(f"{count} models priced by the platform", err=True)
