"""Alembic environment: one code path for PostgreSQL and SQLite.

On PostgreSQL the migration takes an advisory lock, so two releases started at once
run one after the other, and a lock timeout, so a migration never queues behind a
long transaction while blocking every request behind itself.
"""

from alembic import context
from sqlalchemy import create_engine, text

from shared.tables import metadata

MIGRATION_LOCK_ID = 72_114_501


def run_migrations_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is set by shared.migrate"
    engine = create_engine(url)
    with engine.connect() as connection:
        is_postgres = connection.dialect.name == "postgresql"
        if is_postgres:
            connection.execute(text("SET lock_timeout = '10s'"))
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=not is_postgres,  # SQLite alters tables by copying them
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        if is_postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
            connection.commit()
    engine.dispose()


run_migrations_online()
