"""The job's spec as submitted (the request body, before "auto" was resolved), beside the resolved
one; and its adapter's size, for job lists.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("submitted", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("adapter_params", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("adapter_params")
        batch.drop_column("submitted")
