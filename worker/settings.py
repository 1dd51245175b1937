"""Worker settings (environment, prefix ``GORA_WORKER_``), beside the shared ``service.core.settings``.

Kept apart from ``Settings`` so the API's settings stay the API's; both read the same environment, so
one ``.env`` configures a whole host.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.core.settings import Settings


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GORA_WORKER_", extra="ignore")

    # How often the supervising process stamps the job's heartbeat and looks for a cancel.
    heartbeat_s: float = Field(default=5.0, gt=0)
    # After a cancel request the child gets this long to stop at a step boundary before it is
    # killed; a step longer than this (a big model, or still loading) would otherwise miss 10 s.
    cancel_grace_s: float = Field(default=6.0, ge=0)
    # A running job whose heartbeat is older than this is taken back by the reconciler.
    stale_after_s: float = Field(default=90.0, gt=0)
    # A queued job not updated for this long gets its message sent again (duplicates are harmless:
    # the claim is a guarded update, and a message that finds nothing to claim is a no-op).
    requeue_after_s: float = Field(default=300.0, gt=0)
    # How often ``gora worker`` runs the reconciler (0: never; run ``gora reconcile`` elsewhere).
    reconcile_every_s: float = Field(default=30.0, ge=0)
    # A job lost this many times (worker died each time) fails instead of being retried again.
    max_attempts: int = Field(default=3, ge=1)
    # How often the training child reads the job's status for a cancel (a DB read per step is cheap,
    # but with tiny steps this bounds the load).
    cancel_poll_s: float = Field(default=0.5, ge=0)
    # How long a worker waits out a database it cannot reach (a restart) before a write gives up.
    db_patience_s: float = Field(default=120.0, ge=0)
    # Last lines of a child's log copied into the failure event.
    log_tail_lines: int = Field(default=40, ge=1)
    # Where the child keeps local checkpoints and its log; default <GORA_DATA_DIR>/work.
    work_dir: Path | None = None

    def work_root(self, settings: Settings) -> Path:
        """The host's work directory: job workspaces, child logs, ranks' failure records."""
        return self.work_dir or settings.data_dir / "work"
