"""The tables' base, the engines, and the worker's and CLI's way into the database.

Workers and CLI commands use ``Database.transaction()`` (sync sessions); the API uses an
``AsyncSession`` per request (``service.api.db``) with the same pragmas and connection options. Domain code (repositories,
services) is written once against a sync ``Session``; the API runs it with ``AsyncSession.run_sync``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, BigInteger, DateTime, Engine, Integer, MetaData, create_engine, event
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeoutError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

log = logging.getLogger(__name__)

T = TypeVar("T")

# Stable constraint names, so that Alembic migrations name them the same on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
AutoIncrementId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back aware, in UTC.

    PostgreSQL keeps the zone; SQLite keeps none and hands back naive values. Every value is written
    in UTC, so a naive one read back is UTC: it is made aware here, once, for every column.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime}  # noqa: RUF012


def make_engine(url: str, *, pool_size: int = 5) -> Engine:
    """A sync engine: a worker or CLI command holds one or two connections at a time."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", sqlite_pragmas)
        return engine
    # pre_ping: a worker outlives database restarts; a pooled connection the restart broke is
    # replaced at checkout instead of failing the write (a round trip the API does not pay).
    return create_engine(
        url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True, **server_options()
    )


def server_options() -> dict[str, Any]:
    # A database that is down must fail a request within seconds (a 503), not hang it.
    return {"pool_recycle": 1800, "pool_timeout": 10, "connect_args": {"connect_timeout": 5}}


# What SQLAlchemy raises when it cannot talk to the database: connection refused or lost
# (OperationalError, InterfaceError), or no pooled connection free within pool_timeout.
DATABASE_UNREACHABLE = (OperationalError, InterfaceError, SQLAlchemyTimeoutError)


def sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """A sync engine and its session factory; one per worker or CLI process."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        # Objects stay readable after commit: results are read from them once the commit is done.
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits when the block ends and rolls back when it raises; once the
        commit stood, its after-commit actions run (and their follow-ups, each in a new transaction)."""
        session = self.sessions()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        for follow_up in run_after_commit(session):
            with self.transaction() as later:
                follow_up(later)

    def run(self, work: Callable[[Session], T], *, patience_s: float = 0.0) -> T:
        """``work(session)`` in a transaction of its own, tried again while the database cannot be
        reached (a restart) for up to ``patience_s``; then its error is raised.

        For the writes of long-lived processes (a worker outlives a database restart): ``work``
        runs again from the start in a new transaction, so it must not have effects outside it.
        """
        deadline = time.monotonic() + patience_s
        pause = 0.5
        while True:
            try:
                with self.transaction() as session:
                    return work(session)
            except DATABASE_UNREACHABLE as exc:
                if time.monotonic() + pause > deadline:
                    raise
                log.warning("database unreachable (%s); trying again in %.1f s", exc, pause)
                time.sleep(pause)
                pause = min(2 * pause, 10.0)

    def dispose(self) -> None:
        self.engine.dispose()


# An action run after commit may hand back a follow-up: a write that records how the action went,
# run in a transaction of its own (the first one has ended).
FollowUp = Callable[[Session], None]
AfterCommit = Callable[[], FollowUp | None]


def after_commit(session: Session, action: AfterCommit) -> None:
    """Runs ``action`` once the session's transaction has committed (never if it rolls back).

    Used to enqueue a job only once its row is visible to the worker that will read it, and to
    delete stored bytes only once the row that named them says they are gone.
    """
    session.info.setdefault("after_commit", []).append(action)


def run_after_commit(session: Session) -> list[FollowUp]:
    """Runs the session's after-commit actions; returns the follow-ups they asked for."""
    follow_ups = []
    for action in session.info.pop("after_commit", []):
        follow_up = run_action(action)
        if follow_up is not None:
            follow_ups.append(follow_up)
    return follow_ups


def run_action(action: AfterCommit) -> FollowUp | None:
    try:
        return action()
    except Exception:  # the commit stands; each action reports its own failure
        log.exception("after-commit action failed")
        return None
