"""The ledger's entries by account, newest first: `GET /v1/credits` pages by them as
`GET /v1/jobs` pages jobs (the index replaces the one on `account_id` alone, which the
balance's sums used: they use its leading column)

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30

"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_ledger_entries_account_created",
        "ledger_entries",
        ["account_id", "created_at", "id"],
    )
    op.drop_index("ix_ledger_entries_account_id", table_name="ledger_entries")


def downgrade() -> None:
    op.create_index("ix_ledger_entries_account_id", "ledger_entries", ["account_id"])
    op.drop_index("ix_ledger_entries_account_created", table_name="ledger_entries")
