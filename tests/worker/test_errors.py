"""How a child's end becomes the job's error, without a worker process."""

from __future__ import annotations

from pathlib import Path

from service.core.jobs.errors import ErrorCode, JobError
from worker.supervisor import exit_error
from worker.workspace import record_rank_failure, take_rank_failure


def test_a_rank_that_ran_out_of_device_memory_fails_the_job_as_out_of_memory(tmp_path: Path):
    # Rank 1 cannot write the job's record: it leaves a typed error for the supervisor, and
    # torchrun's exit code (1) does not hide it.
    record_rank_failure(tmp_path, "ftjob-x", 1, JobError.out_of_memory("CUDA out of memory"))
    error = exit_error(1, take_rank_failure(tmp_path, "ftjob-x"))
    assert error.code == ErrorCode.OUT_OF_MEMORY
    assert error.param == "hyperparameters.batch_size"
    assert "max_seq_length" in error.message  # says what else to lower
    assert take_rank_failure(tmp_path, "ftjob-x") is None  # taken once: a retry starts clean
    assert take_rank_failure(tmp_path, "ftjob-other") is None


def test_other_exits_stay_internal_errors_with_what_is_known():
    assert exit_error(1).code == ErrorCode.INTERNAL_ERROR
    killed = exit_error(-9)
    assert killed.code == ErrorCode.INTERNAL_ERROR and "out-of-memory killer" in killed.message
    assert "signal 15" in exit_error(-15).message


def test_the_child_names_the_allocation_that_failed():
    error = JobError.out_of_memory("CUDA out of memory")
    assert error.message.startswith("the GPU ran out of memory (CUDA out of memory): lower")
    assert error.as_dict() == {
        "code": "out_of_memory",
        "message": error.message,
        "param": "hyperparameters.batch_size",
    }
