"""`naive admin`: operator commands that talk to the database directly (placeholder, being written)."""

import click


@click.group()
def admin() -> None:
    """Operator commands: migrations, accounts, keys (direct database access)."""
