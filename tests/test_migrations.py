"""Migrations: one head, the models never drift from them, and they run on SQLite too."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from shared.migrate import alembic_config, upgrade


def test_there_is_one_migration_head(database_url: str):
    assert len(ScriptDirectory.from_config(alembic_config(database_url)).get_heads()) == 1


def test_models_match_the_migrations_on_postgresql(database_url: str):
    command.check(alembic_config(database_url))  # raises if autogenerate finds a difference


def test_migrations_run_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'naive.db'}"
    upgrade(url)
    command.check(alembic_config(url))
    command.downgrade(alembic_config(url), "base")
