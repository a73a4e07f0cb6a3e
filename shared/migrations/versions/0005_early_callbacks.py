"""early_callbacks: provider callbacks that came before their job knew its request id;
jobs.result_unfetched_since: since when a finished request's result could not be fetched

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "early_callbacks",
        sa.Column("request_id", sa.String(length=200), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("request_id", name=op.f("pk_early_callbacks")),
    )
    op.add_column(
        "jobs", sa.Column("result_unfetched_since", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("jobs", "result_unfetched_since")
    op.drop_table("early_callbacks")
