"""Engine, sessions and the one place where a request's transaction commits or rolls back."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any, Generic, TypeVar

import psycopg
from anyio import CancelScope, CapacityLimiter, to_thread
from fastapi import Depends, Request
from psycopg.rows import namedtuple_row
from sqlalchemy import JSON, BigInteger, Engine, Integer, MetaData, Select, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from starlette.concurrency import run_in_threadpool

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

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


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Sized for the threadpool FastAPI runs sync routes in (40 threads by default).
    return create_engine(url, pool_size=20, max_overflow=30, pool_recycle=1800)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the API read while a worker writes; foreign keys are off by default in SQLite.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


class Database:
    """An engine and its session factory; one per process (the API app, a worker, a CLI command)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = make_engine(url)
        # Objects stay readable after commit: responses are built from them once the commit is done.
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._reads: AsyncReads | None = None

    @property
    def reads(self) -> AsyncReads:
        """Awaitable single-statement reads (made on first use: workers never need them)."""
        if self._reads is None:
            self._reads = AsyncReads(self)
        return self._reads

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session that commits when the block ends, rolls back when it raises, then runs hooks."""
        session = self.sessions()
        try:
            yield session
        except BaseException:
            self.abandon(session)
            raise
        self.finish(session)

    @staticmethod
    def finish(session: Session) -> None:
        """Commits and closes, then runs the after-commit actions (only once the commit stood)."""
        try:
            session.commit()
        except BaseException:
            Database.abandon(session)
            raise
        session.close()
        run_after_commit(session)

    @staticmethod
    def abandon(session: Session) -> None:
        try:
            session.rollback()
        finally:
            session.close()

    def dispose(self) -> None:
        self.engine.dispose()


class AsyncReads:
    """Single-statement reads for the hot read paths (job status polling), awaited without a thread.

    On PostgreSQL the statement runs on an autocommit psycopg ``AsyncConnection`` of a small pool
    held by the event loop: one round trip per read (no BEGIN/COMMIT), no threadpool hop, and
    psycopg prepares the statement on the server once it has been run a few times. Every read
    goes to the database: nothing is cached, so a read never shows a state older than the last
    commit. On SQLite (in-process, nothing to await) the same statement runs in the threadpool
    through the engine.

    Pools belong to an event loop (psycopg's async connections cannot move between loops): a test
    may serve one app from two loops, so there is one pool per running loop.
    """

    def __init__(self, database: Database, max_connections: int = 8):
        self.database = database
        self.max_connections = max_connections
        self.is_postgresql = database.engine.dialect.name == "postgresql"
        if self.is_postgresql:
            url = make_url(database.url).set(drivername="postgresql")
            self._conninfo = url.render_as_string(hide_password=False)
        self._compiled: dict[int, tuple[Select[Any], str]] = {}
        self._pools: dict[asyncio.AbstractEventLoop, _LoopPool] = {}
        self._coalescers: dict[str, Coalescer[Any, Any]] = {}

    async def one(self, statement: Select[Any], params: dict[str, Any]) -> Any | None:
        """The statement's only row (attributes named by its column labels), or None."""
        if not self.is_postgresql:
            return await run_in_threadpool(self._one_sync, statement, params)
        sql = self._sql(statement)
        async with self._pool().connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchone()

    async def all(self, statement: Select[Any], params: dict[str, Any]) -> list[Any]:
        """The statement's rows; PostgreSQL only (array parameters, e.g. ``= ANY(:ids)``)."""
        sql = self._sql(statement)
        async with self._pool().connection() as connection:
            cursor = await connection.execute(sql, params)
            return await cursor.fetchall()

    async def each(self, statement: Select[Any], many: list[dict[str, Any]]) -> list[Any | None]:
        """``one`` for each set of parameters (in one threadpool hop on SQLite)."""
        if self.is_postgresql:
            return [await self.one(statement, params) for params in many]
        return await run_in_threadpool(self._each_sync, statement, many)

    def _one_sync(self, statement: Select[Any], params: dict[str, Any]) -> Any | None:
        with self.database.engine.connect() as connection:
            return connection.execute(statement, params).one_or_none()

    def _each_sync(self, statement: Select[Any], many: list[dict[str, Any]]) -> list[Any | None]:
        with self.database.engine.connect() as connection:
            return [connection.execute(statement, params).one_or_none() for params in many]

    def coalesced(
        self, name: str, fetch: Callable[[AsyncReads, list[Any]], Awaitable[dict[Any, Any]]]
    ) -> Coalescer[Any, Any]:
        """The ``Coalescer`` named ``name`` of these reads (made on first use)."""
        coalescer = self._coalescers.get(name)
        if coalescer is None:
            coalescer = self._coalescers[name] = Coalescer(
                lambda keys: fetch(self, keys), max_in_flight=max(1, self.max_connections // 2)
            )
        return coalescer

    def _sql(self, statement: Select[Any]) -> str:
        """The statement compiled once for psycopg (``%(name)s`` parameters)."""
        cached = self._compiled.get(id(statement))
        if cached is None or cached[0] is not statement:
            sql = str(statement.compile(dialect=self.database.engine.dialect))
            cached = self._compiled[id(statement)] = (statement, sql)
        return cached[1]

    def _pool(self) -> _LoopPool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(loop)
        if pool is None:
            for stale in [other for other in self._pools if other.is_closed()]:
                del self._pools[stale]  # their connections went with their loop
            pool = self._pools[loop] = _LoopPool(self._conninfo, self.max_connections)
        return pool

    async def close(self) -> None:
        """Closes the running loop's connections (the app's lifespan calls it at shutdown)."""
        pool = self._pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()


class Coalescer(Generic[K, V]):
    """Lookups by key that arrive together share one fetch: ``fetch(keys) -> {key: value}``.

    Every fetch starts only after every lookup it answers was asked (a lookup joins the batch that
    is still waiting for a slot, never one already running), so an answer is never older than its
    request: this is no cache, only fewer round trips when many clients poll at once. At most
    ``max_in_flight`` fetches run at a time; while they do, new lookups gather in the next batch.
    A missing key answers None. State is per event loop, like the connection pools.
    """

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], max_in_flight: int = 4
    ) -> None:
        self.fetch = fetch
        self.max_in_flight = max_in_flight
        self._loops: dict[asyncio.AbstractEventLoop, _CoalescerState[K, V]] = {}

    async def get(self, key: K) -> V | None:
        loop = asyncio.get_running_loop()
        state = self._loops.get(loop)
        if state is None:
            for stale in [other for other in self._loops if other.is_closed()]:
                del self._loops[stale]
            state = self._loops[loop] = _CoalescerState(self.max_in_flight)
        batch = state.open
        if batch is None:
            batch = state.open = {}
            task = loop.create_task(self._run(state, batch))
            state.tasks.add(task)  # a reference, so the task is not collected while it runs
            task.add_done_callback(state.tasks.discard)
        future = batch.get(key)
        if future is None:
            future = batch[key] = loop.create_future()
            # Marks a failure as seen even when every request waiting for it went away.
            future.add_done_callback(lambda done: done.cancelled() or done.exception())
        # Shielded: a client that goes away must not cancel the answer others wait for.
        return await asyncio.shield(future)

    async def _run(
        self, state: _CoalescerState[K, V], batch: dict[K, asyncio.Future[V | None]]
    ) -> None:
        try:
            async with state.slots:
                state.open = None  # from here on, lookups go to a new batch
                found = await self.fetch(list(batch))
        except Exception as exc:  # each waiting request raises it
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
            return
        except BaseException:  # cancelled (the loop is shutting down)
            if state.open is batch:
                state.open = None
            for future in batch.values():
                future.cancel()
            raise
        for key, future in batch.items():
            if not future.done():
                future.set_result(found.get(key))


class _CoalescerState(Generic[K, V]):
    def __init__(self, max_in_flight: int):
        self.slots = asyncio.Semaphore(max_in_flight)
        self.open: dict[K, asyncio.Future[V | None]] | None = None
        self.tasks: set[asyncio.Task[None]] = set()


class _LoopPool:
    """At most ``size`` autocommit connections, opened on demand, reused most-recent first."""

    def __init__(self, conninfo: str, size: int):
        self.conninfo = conninfo
        self.slots = asyncio.Semaphore(size)
        self.idle: list[psycopg.AsyncConnection[Any]] = []

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        async with self.slots:
            connection = self.idle.pop() if self.idle else None
            if connection is None or connection.closed:
                connection = await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, row_factory=namedtuple_row
                )
            try:
                yield connection
            except BaseException:
                # A failed or cancelled read may leave the connection mid-query: never reuse it.
                await connection.close()
                raise
            self.idle.append(connection)

    async def close(self) -> None:
        while self.idle:
            await self.idle.pop().close()


def after_commit(session: Session, action: Callable[[], None]) -> None:
    """Runs ``action`` once the session's transaction has committed (never if it rolls back).

    Used to enqueue a job only once its row is visible to the worker that will read it.
    """
    session.info.setdefault("after_commit", []).append(action)


def run_after_commit(session: Session) -> None:
    for action in session.info.pop("after_commit", []):
        try:
            action()
        except Exception:  # the commit stands; each action reports its own failure
            log.exception("after-commit action failed")


async def _request_session(request: Request) -> AsyncIterator[Session]:
    """The request's session. Creating it does no I/O; ending it (commit or rollback, which do)
    runs in a thread, so the event loop never waits on the database.

    The ending thread is not drawn from the shared threadpool (as FastAPI does for the exits of
    sync dependencies): a request holds a pooled connection until it ends, and if ending had to
    wait for a free thread while every thread waited for a free connection, both would wait forever.
    """
    database: Database = request.app.state.database
    session = database.sessions()
    try:
        yield session
    except BaseException:
        with CancelScope(shield=True):
            await to_thread.run_sync(database.abandon, session, limiter=CapacityLimiter(1))
        raise
    if session.in_transaction():
        with CancelScope(shield=True):
            await to_thread.run_sync(database.finish, session, limiter=CapacityLimiter(1))
    else:  # the request never touched the database: nothing to commit
        session.close()
        run_after_commit(session)


# One session per request. scope="function" commits before the response is sent, so a client that
# reads right after a create sees the row, and a failed commit turns into an error response.
DbSession = Annotated[Session, Depends(_request_session, scope="function")]
