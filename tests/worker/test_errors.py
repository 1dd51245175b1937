"""How a child's end becomes the job's error, without a worker process."""

from __future__ import annotations

from worker.errors import out_of_memory_error
from worker.supervisor import child_error

OOM_TAIL = """Traceback (most recent call last):
  File "worker/run_job.py", line 223, in main
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB. GPU 1 has a total capacity
"""


def test_a_rank_that_ran_out_of_device_memory_fails_the_job_as_out_of_memory():
    error = child_error(1, OOM_TAIL)
    assert error["code"] == "out_of_memory"
    assert error["param"] == "hyperparameters.batch_size"
    assert "max_seq_length" in error["message"]  # says what else to lower


def test_other_exits_stay_internal_errors_with_what_is_known():
    assert child_error(1, "Traceback ...\nValueError: boom\n")["code"] == "internal_error"
    killed = child_error(-9, "")
    assert killed["code"] == "internal_error" and "out-of-memory killer" in killed["message"]
    assert "signal 15" in child_error(-15)["message"]


def test_the_child_names_the_allocation_that_failed():
    error = out_of_memory_error("CUDA out of memory")
    assert error["message"].startswith("the GPU ran out of memory (CUDA out of memory): lower")
