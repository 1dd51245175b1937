"""Database fixtures more than one test package uses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.postgres import PrivatePostgres


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, running; the test may stop and start it."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.remove()
