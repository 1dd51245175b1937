"""Job states and the transitions between them (design.md, "Job lifecycle").

``queued → running → succeeded | failed | cancelled``, with ``cancelling`` between a
cancel request on a running job and the worker's stop. Every change of status goes through
``repository.transition``, a guarded ``UPDATE … WHERE status = :expected``; this table says which
changes exist at all.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobPhase(StrEnum):
    LOADING = "loading"
    PROBING = "probing"
    TRAINING = "training"
    EXPORTING = "exporting"


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})
ACTIVE = frozenset(JobStatus) - TERMINAL
# The statuses in which a worker holds the job (its heartbeat keeps it).
HOLDING = frozenset({JobStatus.RUNNING, JobStatus.CANCELLING})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    # queued -> running is the worker's claim; queued -> cancelled a cancel before it starts.
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED}),
    # running -> queued: a job handed back for a retry (a worker lost mid-run, per the reconciler).
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
        }
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def check_transition(current: str, new: str) -> None:
    """Raises ValueError for a change the lifecycle does not have (a programming error)."""
    if JobStatus(new) not in ALLOWED[JobStatus(current)]:
        raise ValueError(f"a job cannot go from {current!r} to {new!r}")
