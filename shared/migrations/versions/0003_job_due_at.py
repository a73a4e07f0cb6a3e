"""jobs.due_at: when each unfinished job's next step is due; recent renders by model

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FINAL = ("completed", "failed", "cancelled")


def upgrade() -> None:
    op.add_column("jobs", sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_due_at", "jobs", ["due_at"])
    # Recent render times of a model, which pace the first poll of its next jobs.
    op.create_index("ix_jobs_model_delivered", "jobs", ["model", "provider_completed_at"])
    # Jobs in flight during the upgrade are due at once: the dispatcher sends their next step.
    jobs = sa.table("jobs", sa.column("status", sa.String), sa.column("due_at", sa.DateTime))
    op.execute(
        jobs.update().where(jobs.c.status.notin_(FINAL)).values(due_at=sa.func.current_timestamp())
    )


def downgrade() -> None:
    op.drop_index("ix_jobs_model_delivered", table_name="jobs")
    op.drop_index("ix_jobs_due_at", table_name="jobs")
    op.drop_column("jobs", "due_at")
