"""Alembic builds the schema on both databases, and the models and migrations agree."""

from __future__ import annotations

import json
import re
import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect, text

from service.core.db import make_engine
from service.core.migrate import alembic_config, upgrade
from service.core.tables import Base
from tests.helpers.postgres import postgres_database

EXPECTED_TABLES = {
    "teams",
    "api_keys",
    "files",
    "jobs",
    "job_events",
    "checkpoints",
    "job_allocations",
    "webhook_endpoints",
    "webhook_deliveries",
    "uploads",
    "upload_parts",
    "workers",
    "idempotency_keys",
    "alembic_version",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    with postgres_database(f"gora_migrations_{secrets.token_hex(4)}") as url:
        yield url


def _differences(url: str, metadata: MetaData = Base.metadata) -> list:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return compare_metadata(context, metadata)
    finally:
        engine.dispose()


def test_upgrade_builds_every_table_and_matches_the_models(empty_database: str):
    upgrade(empty_database)
    engine = make_engine(empty_database)
    try:
        assert set(inspect(engine).get_table_names()) == EXPECTED_TABLES
    finally:
        engine.dispose()
    assert _differences(empty_database) == []


def test_downgrade_to_base_and_upgrade_again(empty_database: str):
    upgrade(empty_database)
    command.downgrade(alembic_config(empty_database), "base")
    engine = make_engine(empty_database)
    try:
        assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(empty_database)
    assert _differences(empty_database) == []


def test_a_model_change_without_a_migration_is_detected(empty_database: str):
    """The comparison can fail: a column the migrations lack shows up as a difference."""
    upgrade(empty_database)
    changed = MetaData(naming_convention=Base.metadata.naming_convention)
    for table in Base.metadata.tables.values():
        table.to_metadata(changed)
    changed.tables["teams"].append_column(Column("not_migrated", Integer, nullable=True))
    differences = _differences(empty_database, changed)
    assert [(d[0], d[3].name) for d in differences] == [("add_column", "not_migrated")]


FIRST_RELEASE_ROWS = [
    "INSERT INTO teams VALUES ('team-a', 'a', NULL, '2026-01-01')",
    "INSERT INTO files (id, team_id, filename, purpose, bytes, status, rows, labels, errors, "
    "storage_key, created_at) VALUES ('file-a', 'team-a', 'f', 'fine-tune', 1, 'processed', 1, "
    "'[]', '[]', 'files/file-a', '2026-01-01')",
    "INSERT INTO jobs (id, team_id, model, model_source, task, training_file_id, seed, "
    "hyperparameters, method, adapter, pool, gpu_count, priority, status, result_files, attempt, "
    "created_at, updated_at) VALUES ('ftjob-a', 'team-a', 'm', '{}', 'causal_lm', 'file-a', 1, "
    "'{}', '{}', '{}', 'cpu', 0, 0, 'succeeded', '[\"jobs/ftjob-a/adapter/peft\"]', 1, "
    "'2026-01-01', '2026-01-01')",
    "INSERT INTO job_events (job_id, created_at, level, type, message) "
    "VALUES ('ftjob-a', '2026-01-01', 'info', 'message', 'hello')",
    "INSERT INTO job_allocations VALUES ('ftjob-a', 'gora', '{\"budget\": 96}', "
    "'{\"r_ref\": 8}', '{}', '2026-01-01')",
    "INSERT INTO allocation_layers VALUES ('ftjob-a', 0, 'l0', 4, 4, 0.75, 0.5, 8, 64)",
    "INSERT INTO allocation_layers VALUES ('ftjob-a', 1, 'l1', 4, 4, 0.25, 0.5, 4, 32)",
]
LAYERS = [
    {
        "name": "l0",
        "d_in": 4,
        "d_out": 4,
        "importance": 0.75,
        "share": 0.5,
        "rank": 8,
        "params": 64,
    },
    {
        "name": "l1",
        "d_in": 4,
        "d_out": 4,
        "importance": 0.25,
        "share": 0.5,
        "rank": 4,
        "params": 32,
    },
]


def test_rows_of_the_first_release_survive_the_upgrade_and_the_downgrade(empty_database: str):
    upgrade(empty_database, "0001")
    engine = make_engine(empty_database)
    try:
        with engine.begin() as connection:
            for statement in FIRST_RELEASE_ROWS:
                connection.exec_driver_sql(statement)
        upgrade(empty_database)
        with engine.connect() as connection:
            (report,) = connection.execute(text("SELECT report FROM job_allocations")).scalars()
            ((event_id, message),) = connection.execute(text("SELECT id, message FROM job_events"))
            (result_files,) = connection.execute(text("SELECT result_files FROM jobs")).scalars()
            result_files = (
                result_files if isinstance(result_files, str) else json.dumps(result_files)
            )
        report = json.loads(report) if isinstance(report, str) else report
        assert report == {
            "adapter_type": "gora",
            "layers": LAYERS,
            "totals": {"budget": 96},
            "config": {"r_ref": 8},
            "probe": {},
        }
        assert message == "hello" and re.fullmatch(r"ftevent-[A-Za-z0-9]{24}", event_id)
        assert json.loads(result_files) == []  # storage keys are not files
        command.downgrade(alembic_config(empty_database), "0001")
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT * FROM allocation_layers ORDER BY position"))
            assert [dict(row._mapping) for row in rows] == [
                {"job_id": "ftjob-a", "position": i, **layer} for i, layer in enumerate(LAYERS)
            ]
            head = connection.execute(text("SELECT adapter_type FROM job_allocations")).scalar()
            assert head == "gora"
    finally:
        engine.dispose()
