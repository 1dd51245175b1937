"""SQL for the workers' presence rows."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from service.core.clock import utcnow
from service.core.workers.models import Worker


def seen(session: Session, worker_id: str, host: str, pool: str, gpus: list[str]) -> None:
    """This worker is alive now (its row made on the first call)."""
    now = utcnow()
    statement = update(Worker).where(Worker.id == worker_id).values(last_seen_at=now)
    if session.execute(statement).rowcount == 0:  # type: ignore[attr-defined]
        session.add(Worker(id=worker_id, host=host, pool=pool, gpus=gpus, last_seen_at=now))
        session.flush()


def gone(session: Session, worker_id: str) -> None:
    session.execute(delete(Worker).where(Worker.id == worker_id))


def online(session: Session, since: datetime) -> list[Worker]:
    query = select(Worker).where(Worker.last_seen_at >= since)
    return list(session.scalars(query.order_by(Worker.pool, Worker.id)))


FORGET_AFTER = timedelta(days=1)


def forget_the_long_gone(session: Session) -> None:
    """Rows of workers that stopped without saying so (killed), a day after their last stamp."""
    session.execute(delete(Worker).where(Worker.last_seen_at < utcnow() - FORGET_AFTER))
