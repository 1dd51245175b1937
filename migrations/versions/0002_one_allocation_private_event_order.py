"""The allocation stored once, events with public ids of their own, no 'validating_files' status.

- ``job_allocations`` holds the library's report whole (a ``report`` JSON column); the per-layer
  rows of ``allocation_layers``, which nothing queried, are folded into it and the table dropped.
- ``job_events`` gets a random public ``id``: the old public id was the global sequence, which let a
  team count every team's activity. The sequence stays, as the order.
- the ``validating_files`` status was never set (files are checked when uploaded).

Every existing row is carried over, both ways.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

import secrets
import string
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LAYER_FIELDS = ("name", "d_in", "d_out", "importance", "share", "rank", "params")
STATUSES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
_ALPHABET = string.ascii_letters + string.digits

allocations = sa.table(
    "job_allocations",
    sa.column("job_id", sa.String),
    sa.column("adapter_type", sa.String),
    sa.column("totals", sa.JSON),
    sa.column("config", sa.JSON),
    sa.column("probe", sa.JSON),
    sa.column("report", sa.JSON),
)
layers = sa.table(
    "allocation_layers",
    sa.column("job_id", sa.String),
    sa.column("position", sa.Integer),
    *(sa.column(name) for name in LAYER_FIELDS),
)
events = sa.table("job_events", sa.column("seq", sa.Integer), sa.column("id", sa.String))


def _status_check(statuses: Sequence[str]) -> str:
    return "status IN (" + ", ".join(f"'{s}'" for s in statuses) + ")"


def upgrade() -> None:
    _fold_allocation_layers()
    _give_events_ids()
    op.execute("UPDATE jobs SET status = 'queued' WHERE status = 'validating_files'")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint("status", _status_check(STATUSES))


def _fold_allocation_layers() -> None:
    op.add_column("job_allocations", sa.Column("report", sa.JSON(), nullable=True))
    connection = op.get_bind()
    by_job: dict[str, list[dict]] = {}
    for row in connection.execute(sa.select(layers).order_by(layers.c.job_id, layers.c.position)):
        by_job.setdefault(row.job_id, []).append({name: getattr(row, name) for name in LAYER_FIELDS})
    for row in connection.execute(sa.select(allocations)).all():
        report = {
            "adapter_type": row.adapter_type,
            "layers": by_job.get(row.job_id, []),
            "totals": row.totals,
            "config": row.config,
            "probe": row.probe or {},
        }
        connection.execute(
            allocations.update().where(allocations.c.job_id == row.job_id).values(report=report)
        )
    op.drop_table("allocation_layers")
    with op.batch_alter_table("job_allocations") as batch:
        batch.alter_column("report", existing_type=sa.JSON(), nullable=False)
        for column in ("adapter_type", "totals", "config", "probe"):
            batch.drop_column(column)


def _give_events_ids() -> None:
    op.add_column("job_events", sa.Column("id", sa.String(length=40), nullable=True))
    connection = op.get_bind()
    for (seq,) in connection.execute(sa.select(events.c.seq)).all():
        public = "ftevent-" + "".join(secrets.choice(_ALPHABET) for _ in range(24))
        connection.execute(events.update().where(events.c.seq == seq).values(id=public))
    with op.batch_alter_table("job_events") as batch:
        batch.alter_column("id", existing_type=sa.String(length=40), nullable=False)
        batch.create_unique_constraint(op.f("uq_job_events_id"), ["id"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("ck_jobs_status"), type_="check")
        batch.create_check_constraint("status", _status_check(("validating_files", *STATUSES)))
    with op.batch_alter_table("job_events") as batch:
        batch.drop_constraint(op.f("uq_job_events_id"), type_="unique")
        batch.drop_column("id")
    _unfold_allocation_layers()


def _unfold_allocation_layers() -> None:
    with op.batch_alter_table("job_allocations") as batch:
        batch.add_column(sa.Column("adapter_type", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("totals", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("config", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("probe", sa.JSON(), nullable=True))
    op.create_table(
        "allocation_layers",
        sa.Column("job_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("d_in", sa.Integer(), nullable=False),
        sa.Column("d_out", sa.Integer(), nullable=False),
        sa.Column("importance", sa.Float(), nullable=True),
        sa.Column("share", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("params", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job_allocations.job_id"],
            name=op.f("fk_allocation_layers_job_id_job_allocations"),
        ),
        sa.PrimaryKeyConstraint("job_id", "position", name=op.f("pk_allocation_layers")),
    )
    connection = op.get_bind()
    for row in connection.execute(sa.select(allocations.c.job_id, allocations.c.report)).all():
        report = row.report
        connection.execute(
            allocations.update()
            .where(allocations.c.job_id == row.job_id)
            .values(
                adapter_type=report["adapter_type"],
                totals=report["totals"],
                config=report["config"],
                probe=report.get("probe") or {},
            )
        )
        for position, layer in enumerate(report["layers"]):
            values = {name: layer[name] for name in LAYER_FIELDS}
            connection.execute(layers.insert().values(job_id=row.job_id, position=position, **values))
    with op.batch_alter_table("job_allocations") as batch:
        for column in ("adapter_type", "totals", "config", "probe"):
            batch.alter_column(column, nullable=False)
        batch.drop_column("report")
