"""Alembic builds the schema on both databases, and the models and migrations agree."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, Integer, MetaData, inspect

from service.core.db import make_engine
from service.core.migrate import alembic_config, upgrade
from service.core.tables import Base
from tests.service.conftest import postgres_database

EXPECTED_TABLES = {
    "teams",
    "api_keys",
    "files",
    "jobs",
    "job_events",
    "checkpoints",
    "job_allocations",
    "allocation_layers",
    "idempotency_keys",
    "alembic_version",
}


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'schema.db'}"
        return
    databases = postgres_database(f"gora_migrations_{secrets.token_hex(4)}")
    yield next(databases)
    databases.close()


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
