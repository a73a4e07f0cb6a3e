"""webhook_subscriptions.job_id: a job's own webhook (`webhook_url` on the submit)

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_JOB = sa.text("job_id IS NOT NULL")


def upgrade() -> None:
    # A nullable column without a default: no table rewrite, the running code ignores it.
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.add_column(sa.Column("job_id", sa.Uuid(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_webhook_subscriptions_job_id_jobs"), "jobs", ["job_id"], ["id"]
        )
    op.create_index(
        "ix_webhook_subscriptions_job",
        "webhook_subscriptions",
        ["job_id"],
        postgresql_where=HAS_JOB,
        sqlite_where=HAS_JOB,
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_subscriptions_job", table_name="webhook_subscriptions")
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.drop_constraint(op.f("fk_webhook_subscriptions_job_id_jobs"), type_="foreignkey")
        batch.drop_column("job_id")
