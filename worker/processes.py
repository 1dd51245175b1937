"""The processes of one job: which rank this is, dying with the parent, a kill that reaches every rank.

Torch-free (the supervisor and the log formatter use it): a job's child is one process, or torchrun
and one process per GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess

PR_SET_PDEATHSIG = 1


def rank_and_world() -> tuple[int, int]:
    """(this rank, number of ranks): torchrun exports RANK and WORLD_SIZE; a plain child is 0 of 1."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def die_with_parent() -> None:
    """Linux: the kernel kills this process when its parent dies, so no orphan keeps training.

    The training child calls it for itself; the supervisor gives it to torchrun as its preexec_fn.
    """
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the reconciler still takes
        # the job back once the supervisor's heartbeat stops
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere or once it is gone)."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{parent}/task/{task}/children") as handle:
                    children = [int(child) for child in handle.read().split()]
            except OSError:
                continue
            found.extend(children)
            todo.extend(children)
    return found


def kill_job_processes(child: subprocess.Popen, processes: int) -> None:
    """SIGKILL the training child and, under torchrun, every rank it started."""
    if processes <= 1:
        child.kill()
        return
    # torchrun starts each rank in a session of its own, so its process group holds torchrun alone:
    # the ranks are found by ancestry and killed by pid (each would also die with torchrun, by
    # PR_SET_PDEATHSIG, but a rank must never outlive a kill).
    ranks = descendants(child.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    for pid in ranks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
