"""The API's one way into the database: SQLAlchemy's ``AsyncSession``, one per request (``DbSession``).

The API is async end to end, so a request waits on the database without holding a thread. The domain
code is sync (it is shared with the worker): routes run it with ``await session.run_sync(fn, ...)``,
which SQLAlchemy executes on the same async connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from anyio import CancelScope, to_thread
from fastapi import Depends, Request
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from service.core.db import run_action, server_options, sqlite_pragmas


def async_driver_url(url: str) -> URL:
    """The settings' URL with its async driver: aiosqlite for SQLite, psycopg's async side for
    PostgreSQL (``postgresql+psycopg`` names both)."""
    parsed = make_url(url)
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(
        f"GORA_DATABASE_URL uses {parsed.drivername!r}; use sqlite:///<file> or "
        "postgresql+psycopg://<user>@<host>/<database>"
    )


def make_async_engine(url: str) -> AsyncEngine:
    async_url = async_driver_url(url)
    if async_url.get_backend_name() == "sqlite":
        engine = create_async_engine(async_url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        return engine
    return create_async_engine(async_url, pool_size=10, max_overflow=20, **server_options())


class AsyncDatabase:
    """The API process's engine and session factory."""

    def __init__(self, url: str):
        self.engine = make_async_engine(url)
        # Objects stay readable after commit: responses are built from them once the commit is done.
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        # For single-statement reads (the shared reads of service.api.coalescer): in autocommit,
        # a read is one round trip instead of three (BEGIN, SELECT, ROLLBACK).
        self.single_reads = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    async def run_after_commit(self, session: AsyncSession) -> None:
        """The committed session's after-commit actions, each in a thread (they may block on the
        broker or the store), and their follow-up writes, each in a transaction of its own."""
        for action in session.sync_session.info.pop("after_commit", []):
            follow_up = await to_thread.run_sync(run_action, action)
            if follow_up is not None:
                async with self.sessions() as later:
                    await later.run_sync(follow_up)
                    await later.commit()

    async def dispose(self) -> None:
        await self.engine.dispose()


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: committed when the route returns, rolled back when it raises.

    Creating it does no I/O: a request that never touches the database costs no connection. The end
    is shielded from cancellation (a client that goes away mid-request) so that the connection goes
    back to the pool clean.
    """
    database: AsyncDatabase = request.app.state.gora.database
    session = database.sessions()
    try:
        yield session
        if session.in_transaction():
            with CancelScope(shield=True):
                await session.commit()
    except BaseException:
        with CancelScope(shield=True):
            await session.rollback()
            await session.close()
        raise
    with CancelScope(shield=True):
        await session.close()
    await database.run_after_commit(session)


# One session per request. scope="function" commits before the response is sent, so a client that
# reads right after a create sees the row, and a failed commit turns into an error response.
DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
