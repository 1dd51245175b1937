"""Where a job lives on a worker host, under the work root (``WorkerSettings.work_root``).

- ``<root>/<job>/`` (rank 0) and ``<root>/<job>.rank<i>/``: a rank's data copies, checkpoints and
  export, removed when the job ends on this host;
- ``<root>/logs/<job>.log``: the child's log (every rank writes to it), quoted by a crash event;
- ``<root>/failures/<job>.rank<i>.json``: a typed error a rank other than 0 met (out of device
  memory), for the supervisor: such a rank cannot write the job's record, only rank 0 does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from service.core.jobs.errors import JobError


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def of(cls, work_root: Path, job_id: str, rank: int = 0) -> Workspace:
        return cls(work_root / (job_id if rank == 0 else f"{job_id}.rank{rank}"))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def export(self) -> Path:
        return self.root / "export"

    def prepare(self) -> None:
        shutil.rmtree(self.export, ignore_errors=True)  # a previous attempt's, half written
        self.root.mkdir(parents=True, exist_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def child_log(work_root: Path, job_id: str) -> Path:
    folder = work_root / "logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{job_id}.log"


def _failures(work_root: Path, job_id: str) -> list[Path]:
    return sorted((work_root / "failures").glob(f"{job_id}.rank*.json"))


def record_rank_failure(work_root: Path, job_id: str, rank: int, error: JobError) -> None:
    folder = work_root / "failures"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{job_id}.rank{rank}.json").write_text(json.dumps(error.as_dict()))


def take_rank_failure(work_root: Path, job_id: str) -> JobError | None:
    """The first error a rank recorded for the job (removing every record), or None."""
    found = None
    for path in _failures(work_root, job_id):
        if found is None:
            found = JobError.from_dict(json.loads(path.read_text()))
        path.unlink(missing_ok=True)
    return found
