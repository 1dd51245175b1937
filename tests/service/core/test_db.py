"""The worker's way into the database waits out a database it cannot reach, for a while."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from service.core.db import Database


def test_a_write_is_tried_again_while_the_database_is_unreachable(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    calls = []

    def flaky(session) -> int:
        calls.append(1)
        if len(calls) < 3:  # a restart: the first two tries cannot connect
            raise OperationalError("SELECT 1", {}, ConnectionRefusedError("refused"))
        return session.execute(text("SELECT 7")).scalar_one()

    assert database.run(flaky, patience_s=30) == 7
    assert len(calls) == 3
    database.dispose()


def test_past_its_patience_the_error_is_raised():
    database = Database("postgresql+psycopg://postgres@127.0.0.1:1/nothing")  # nothing listens
    started = time.monotonic()
    with pytest.raises(OperationalError):
        database.run(lambda session: session.execute(text("SELECT 1")), patience_s=2)
    assert 1.5 < time.monotonic() - started < 20
    database.dispose()
