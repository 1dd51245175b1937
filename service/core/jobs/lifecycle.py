"""Job states and the transitions between them (design.md, "Job lifecycle").

``queued → running → succeeded | failed | cancelled``, with ``cancelling`` between a
cancel request on a running job and the worker's stop, and ``pausing → paused`` for a pause (the
worker checkpoints at its next step and frees its GPU; a resume queues the job again). Every change of status goes through
``repository.transition``, a guarded ``UPDATE … WHERE status = :expected``; this table says which
changes exist at all.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    PAUSING = "pausing"
    PAUSED = "paused"
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
HOLDING = frozenset({JobStatus.RUNNING, JobStatus.CANCELLING, JobStatus.PAUSING})

ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    # queued -> running is the worker's claim; queued -> cancelled a cancel before it starts;
    # queued -> paused a pause before it starts.
    JobStatus.QUEUED: frozenset(
        {JobStatus.RUNNING, JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.PAUSED}
    ),
    # running -> queued: a job handed back for a retry (a worker lost mid-run, per the reconciler).
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
            JobStatus.PAUSING,
        }
    ),
    JobStatus.CANCELLING: frozenset({JobStatus.CANCELLED, JobStatus.FAILED, JobStatus.SUCCEEDED}),
    # pausing -> paused once the worker saved a checkpoint at the step it stopped at; a pause that
    # came as the last step ended lets the job finish (succeeded).
    JobStatus.PAUSING: frozenset(
        {
            JobStatus.PAUSED,
            JobStatus.CANCELLING,
            JobStatus.CANCELLED,
            JobStatus.FAILED,
            JobStatus.SUCCEEDED,
        }
    ),
    # paused -> queued: resumed, it continues from the checkpoint it paused at.
    JobStatus.PAUSED: frozenset({JobStatus.QUEUED, JobStatus.CANCELLED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def check_transition(current: str, new: str) -> None:
    """Raises ValueError for a change the lifecycle does not have (a programming error)."""
    if JobStatus(new) not in ALLOWED[JobStatus(current)]:
        raise ValueError(f"a job cannot go from {current!r} to {new!r}")
