"""Pausing and paused jobs (OpenAI's pause and resume).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
AFTER = ("queued", "running", "cancelling", "pausing", "paused", "succeeded", "failed", "cancelled")


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint("status", _status_check(AFTER))


def downgrade() -> None:
    # A paused job goes back to the queue it would return to on resume; a pausing one keeps running.
    op.execute("UPDATE jobs SET status = 'queued', worker_id = NULL WHERE status = 'paused'")
    op.execute("UPDATE jobs SET status = 'running' WHERE status = 'pausing'")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint("status", _status_check(BEFORE))
