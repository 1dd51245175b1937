"""The workers online: each ``gora worker`` says, every heartbeat, that it is there, for which pool,
with which GPUs. Only what a team needs to see of the fleet; the job rows say what each one runs."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, String
from sqlalchemy.orm import Mapped, mapped_column

from service.core.clock import utcnow
from service.core.db import Base


class Worker(Base):
    __tablename__ = "workers"
    __table_args__ = (Index("ix_workers_pool_seen", "pool", "last_seen_at"),)

    id: Mapped[str] = mapped_column(String(200), primary_key=True)  # <host>/<pid>
    host: Mapped[str] = mapped_column(String(200))
    pool: Mapped[str] = mapped_column(String(64))
    gpus: Mapped[list[Any]] = mapped_column(default=list)  # its CUDA_VISIBLE_DEVICES, as ids
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
