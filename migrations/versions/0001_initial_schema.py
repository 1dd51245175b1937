"""Initial schema: teams, API keys, files, jobs, events, checkpoints, allocations, idempotency keys.

Revision ID: 0001
Revises: 
Create Date: 2026-01-01 (the service's first schema)
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('teams',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('max_running_jobs', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_teams')),
    sa.UniqueConstraint('name', name=op.f('uq_teams_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('team_id', sa.String(length=40), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_api_keys_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('key_hash', name=op.f('uq_api_keys_key_hash'))
    )
    op.create_index(op.f('ix_api_keys_team_id'), 'api_keys', ['team_id'], unique=False)
    op.create_table('files',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('team_id', sa.String(length=40), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('bytes', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_details', sa.Text(), nullable=True),
    sa.Column('data_format', sa.String(length=32), nullable=True),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('errors', sa.JSON(), nullable=False),
    sa.Column('storage_key', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_files_team_id_teams')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_files'))
    )
    op.create_index('ix_files_team_listing', 'files', ['team_id', 'created_at', 'id'], unique=False)
    op.create_table('jobs',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('team_id', sa.String(length=40), nullable=False),
    sa.Column('model', sa.String(length=256), nullable=False),
    sa.Column('model_source', sa.JSON(), nullable=False),
    sa.Column('task', sa.String(length=40), nullable=False),
    sa.Column('training_file_id', sa.String(length=40), nullable=False),
    sa.Column('validation_file_id', sa.String(length=40), nullable=True),
    sa.Column('suffix', sa.String(length=64), nullable=True),
    sa.Column('seed', sa.BigInteger(), nullable=False),
    sa.Column('metadata', sa.JSON(), nullable=True),
    sa.Column('hyperparameters', sa.JSON(), nullable=False),
    sa.Column('method', sa.JSON(), nullable=False),
    sa.Column('adapter', sa.JSON(), nullable=False),
    sa.Column('pool', sa.String(length=64), nullable=False),
    sa.Column('gpu_count', sa.Integer(), nullable=False),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('phase', sa.String(length=20), nullable=True),
    sa.Column('error', sa.JSON(), nullable=True),
    sa.Column('fine_tuned_model', sa.String(length=300), nullable=True),
    sa.Column('result_files', sa.JSON(), nullable=False),
    sa.Column('trained_tokens', sa.BigInteger(), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('heartbeat_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("phase IN ('loading', 'probing', 'training', 'exporting')", name=op.f('ck_jobs_phase')),
    sa.CheckConstraint("status IN ('validating_files', 'queued', 'running', 'cancelling', 'succeeded', 'failed', 'cancelled')", name=op.f('ck_jobs_status')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_jobs_team_id_teams')),
    sa.ForeignKeyConstraint(['training_file_id'], ['files.id'], name=op.f('fk_jobs_training_file_id_files')),
    sa.ForeignKeyConstraint(['validation_file_id'], ['files.id'], name=op.f('fk_jobs_validation_file_id_files')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_jobs'))
    )
    op.create_index('ix_jobs_scheduling', 'jobs', ['status', 'pool', 'priority', 'created_at'], unique=False)
    op.create_index('ix_jobs_team_listing', 'jobs', ['team_id', 'created_at', 'id'], unique=False)
    op.create_table('checkpoints',
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('storage_key', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_checkpoints_job_id_jobs')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoints')),
    sa.UniqueConstraint('job_id', 'step', name='uq_checkpoints_job_step')
    )
    op.create_index(op.f('ix_checkpoints_job_id'), 'checkpoints', ['job_id'], unique=False)
    op.create_table('idempotency_keys',
    sa.Column('team_id', sa.String(length=40), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_idempotency_keys_job_id_jobs')),
    sa.ForeignKeyConstraint(['team_id'], ['teams.id'], name=op.f('fk_idempotency_keys_team_id_teams')),
    sa.PrimaryKeyConstraint('team_id', 'key', name=op.f('pk_idempotency_keys'))
    )
    op.create_table('job_allocations',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('adapter_type', sa.String(length=16), nullable=False),
    sa.Column('totals', sa.JSON(), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('probe', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_allocations_job_id_jobs')),
    sa.PrimaryKeyConstraint('job_id', name=op.f('pk_job_allocations'))
    )
    op.create_table('job_events',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('level', sa.String(length=10), nullable=False),
    sa.Column('type', sa.String(length=20), nullable=False),
    sa.Column('message', sa.Text(), nullable=False),
    sa.Column('data', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_job_events_job_id_jobs')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_job_events'))
    )
    op.create_index('ix_job_events_job_order', 'job_events', ['job_id', 'seq'], unique=False)
    op.create_table('allocation_layers',
    sa.Column('job_id', sa.String(length=40), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('d_in', sa.Integer(), nullable=False),
    sa.Column('d_out', sa.Integer(), nullable=False),
    sa.Column('importance', sa.Float(), nullable=True),
    sa.Column('share', sa.Float(), nullable=True),
    sa.Column('rank', sa.Integer(), nullable=False),
    sa.Column('params', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['job_allocations.job_id'], name=op.f('fk_allocation_layers_job_id_job_allocations')),
    sa.PrimaryKeyConstraint('job_id', 'position', name=op.f('pk_allocation_layers'))
    )


def downgrade() -> None:
    op.drop_table('allocation_layers')
    op.drop_index('ix_job_events_job_order', table_name='job_events')
    op.drop_table('job_events')
    op.drop_table('job_allocations')
    op.drop_table('idempotency_keys')
    op.drop_index(op.f('ix_checkpoints_job_id'), table_name='checkpoints')
    op.drop_table('checkpoints')
    op.drop_index('ix_jobs_team_listing', table_name='jobs')
    op.drop_index('ix_jobs_scheduling', table_name='jobs')
    op.drop_table('jobs')
    op.drop_index('ix_files_team_listing', table_name='files')
    op.drop_table('files')
    op.drop_index(op.f('ix_api_keys_team_id'), table_name='api_keys')
    op.drop_table('api_keys')
    op.drop_table('teams')
