"""A job's estimated finish; result_files name files (OpenAI's shape), not storage keys.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("estimated_finish", sa.DateTime(timezone=True), nullable=True))
    # Jobs that finished before listed storage keys there (jobs/<id>/...), which no endpoint
    # serves; their adapters stay downloadable from /adapter, their metrics in the events.
    op.execute("UPDATE jobs SET result_files = '[]' WHERE CAST(result_files AS TEXT) LIKE '%jobs/%'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("estimated_finish")
