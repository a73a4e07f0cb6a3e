"""Fair share and spend control: budgets, binding quotes, batches (with their aggregate
hold), the fair scheduler's columns (accounts' caps and weights, jobs' admission), and what
the provider billed

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "status = 'queued' AND capacity_limited AND admitted_at IS NULL"


def _created_at() -> sa.Column[object]:
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "quotes",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("input_hash", sa.String(length=64), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("unit_price_usd", sa.Double(), nullable=False),
        _created_at(),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_quotes_account_id_accounts"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_quotes"),
    )
    op.create_index("ix_quotes_account_id", "quotes", ["account_id"])
    op.create_table(
        "batches",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("api_key_id", sa.Uuid(), nullable=True),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("held", sa.BigInteger(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        _created_at(),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_batches_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_keys.id"], name="fk_batches_api_key_id_api_keys"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.UniqueConstraint(
            "account_id", "idempotency_key", name="uq_batches_account_id_idempotency_key"
        ),
    )
    op.create_table(
        "budgets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        _created_at(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_budgets_account_id_accounts"
        ),
        sa.ForeignKeyConstraint(["key_id"], ["api_keys.id"], name="fk_budgets_key_id_api_keys"),
        sa.PrimaryKeyConstraint("id", name="pk_budgets"),
    )
    op.create_index("ix_budgets_account_id", "budgets", ["account_id"])
    # Columns with server defaults or nullable: existing rows need no rewrite by us.
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("concurrency_cap", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("scheduling_weight", sa.Integer(), server_default="1", nullable=False)
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("api_key_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("quote_id", sa.Uuid(), nullable=True))
        batch.add_column(
            sa.Column("capacity_limited", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(sa.Column("admitted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("provider_units", sa.Double(), nullable=True))
        batch.add_column(sa.Column("provider_cost_usd", sa.Double(), nullable=True))
        batch.create_index("ix_jobs_batch_id", ["batch_id"])
        batch.create_index(
            "ix_jobs_waiting",
            ["provider", "created_at"],
            postgresql_where=sa.text(WAITING),
            sqlite_where=sa.text(WAITING),
        )
        batch.create_foreign_key("fk_jobs_batch_id_batches", "batches", ["batch_id"], ["id"])
        batch.create_foreign_key("fk_jobs_api_key_id_api_keys", "api_keys", ["api_key_id"], ["id"])
        batch.create_foreign_key("fk_jobs_quote_id_quotes", "quotes", ["quote_id"], ["id"])
    with op.batch_alter_table("ledger_entries") as batch:
        batch.add_column(sa.Column("batch_id", sa.Uuid(), nullable=True))
        batch.create_unique_constraint("uq_ledger_entries_batch_id_kind", ["batch_id", "kind"])
        batch.create_foreign_key(
            "fk_ledger_entries_batch_id_batches", "batches", ["batch_id"], ["id"]
        )


def downgrade() -> None:
    with op.batch_alter_table("ledger_entries") as batch:
        batch.drop_constraint("fk_ledger_entries_batch_id_batches", type_="foreignkey")
        batch.drop_constraint("uq_ledger_entries_batch_id_kind", type_="unique")
        batch.drop_column("batch_id")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_quote_id_quotes", type_="foreignkey")
        batch.drop_constraint("fk_jobs_api_key_id_api_keys", type_="foreignkey")
        batch.drop_constraint("fk_jobs_batch_id_batches", type_="foreignkey")
        batch.drop_index("ix_jobs_waiting")
        batch.drop_index("ix_jobs_batch_id")
        for column in (
            "provider_cost_usd",
            "provider_units",
            "admitted_at",
            "capacity_limited",
            "quote_id",
            "batch_id",
            "api_key_id",
        ):
            batch.drop_column(column)
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("scheduling_weight")
        batch.drop_column("concurrency_cap")
    op.drop_table("budgets")
    op.drop_table("batches")
    op.drop_table("quotes")
