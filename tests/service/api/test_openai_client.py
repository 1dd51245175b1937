"""The official ``openai`` client, unchanged, against the app served by uvicorn on loopback."""

from __future__ import annotations

import io

import openai
import pytest

from tests.helpers import api as support
from tests.helpers.api import jsonl


def test_files_and_fine_tuning_jobs(openai_client: openai.OpenAI):
    uploaded = openai_client.files.create(
        file=("train.jsonl", io.BytesIO(jsonl(support.CHAT))), purpose="fine-tune"
    )
    assert uploaded.id.startswith("file-") and uploaded.status == "processed"
    assert uploaded.bytes == len(jsonl(support.CHAT)) and uploaded.filename == "train.jsonl"

    job = openai_client.fine_tuning.jobs.create(
        model="smollm2-135m",
        training_file=uploaded.id,
        suffix="sdk",
        seed=3,
        metadata={"source": "sdk"},
        hyperparameters={"n_epochs": 1, "batch_size": 2},
        extra_body={"adapter": {"r_ref": 4, "probe_steps": 2}},
    )
    assert job.object == "fine_tuning.job" and job.id.startswith("ftjob-")
    assert job.status == "queued" and job.training_file == uploaded.id
    assert job.hyperparameters.n_epochs == 1 and job.hyperparameters.batch_size == 2
    assert job.seed == 3 and job.metadata == {"source": "sdk"}
    assert isinstance(job.created_at, int)

    retrieved = openai_client.fine_tuning.jobs.retrieve(job.id)
    assert retrieved.id == job.id and retrieved.model == "smollm2-135m"

    listed = openai_client.fine_tuning.jobs.list(limit=10, metadata={"source": "sdk"})
    assert [j.id for j in listed.data] == [job.id]
    assert listed.has_more is False

    cancelled = openai_client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None

    events = openai_client.fine_tuning.jobs.list_events(job.id, limit=10)
    assert events.data[0].object == "fine_tuning.job.event"
    assert events.data[0].message == "Job cancelled before it started"
    assert all(e.level in ("info", "warn", "error") for e in events.data)


def test_pages_follow_the_cursor(openai_client: openai.OpenAI):
    uploaded = openai_client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(support.TEXT))), purpose="fine-tune"
    )
    created = [
        openai_client.fine_tuning.jobs.create(model="smollm2-135m", training_file=uploaded.id).id
        for _ in range(3)
    ]
    # Iterating a page follows has_more/after through every page.
    seen = [j.id for j in openai_client.fine_tuning.jobs.list(limit=2)]
    assert seen == list(reversed(created))


def test_errors_arrive_as_openai_exceptions(openai_client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as bad:
        openai_client.fine_tuning.jobs.create(model="smollm2-135m", training_file="file-nope")
    assert bad.value.status_code == 400
    assert bad.value.param == "training_file"
    assert bad.value.code == "file_not_found"
    with pytest.raises(openai.NotFoundError):
        openai_client.fine_tuning.jobs.retrieve("ftjob-nope")


def test_a_wrong_key_is_an_authentication_error(live_url: str):
    client = openai.OpenAI(base_url=f"{live_url}/v1", api_key="gsk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.fine_tuning.jobs.list()


def test_method_pause_and_resume_through_the_client(openai_client: openai.OpenAI):
    uploaded = openai_client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(support.CHAT))), purpose="fine-tune"
    )
    job = openai_client.fine_tuning.jobs.create(
        model="smollm2-135m",
        training_file=uploaded.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    )
    assert job.method.type == "supervised"
    assert job.method.supervised.hyperparameters.n_epochs == 2 and job.hyperparameters.n_epochs == 2
    with pytest.raises(openai.BadRequestError) as unsupported:
        openai_client.fine_tuning.jobs.create(
            model="smollm2-135m", training_file=uploaded.id, method={"type": "reinforcement"}
        )
    assert (
        unsupported.value.param == "method.type" and "supervised, dpo" in unsupported.value.message
    )
    with pytest.raises(openai.BadRequestError) as not_pairs:  # DPO needs preference rows
        openai_client.fine_tuning.jobs.create(
            model="smollm2-135m", training_file=uploaded.id, method={"type": "dpo"}
        )
    assert not_pairs.value.param == "training_file" and "preference" in not_pairs.value.message

    paused = openai_client.fine_tuning.jobs.pause(job.id)  # queued: paused at once
    assert paused.status == "paused"
    assert openai_client.fine_tuning.jobs.pause(job.id).status == "paused"  # asked twice: the same
    resumed = openai_client.fine_tuning.jobs.resume(job.id)
    assert resumed.status == "queued"
    assert openai_client.fine_tuning.jobs.checkpoints.list(job.id).data == []
    openai_client.fine_tuning.jobs.cancel(job.id)
    with pytest.raises(openai.ConflictError) as finished:
        openai_client.fine_tuning.jobs.pause(job.id)
    assert finished.value.code == "job_not_pausable"


def test_a_dpo_job_and_a_searched_rate_through_the_client(openai_client: openai.OpenAI):
    pair = {
        "input": {"messages": [{"role": "user", "content": "2 plus 5?"}]},
        "preferred_output": [{"role": "assistant", "content": "7"}],
        "non_preferred_output": [{"role": "assistant", "content": "8"}],
    }
    pairs = openai_client.files.create(
        file=("pairs.jsonl", io.BytesIO(jsonl([pair] * 4))), purpose="fine-tune"
    )
    assert pairs.status == "processed" and pairs.model_extra["format"] == "preference"
    job = openai_client.fine_tuning.jobs.create(
        model="smollm2-135m",
        training_file=pairs.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {"n_epochs": 1}}},
    )
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    assert job.method.dpo.hyperparameters.n_epochs == 1

    chat = openai_client.files.create(
        file=("t.jsonl", io.BytesIO(jsonl(support.CHAT))), purpose="fine-tune"
    )
    searched = openai_client.fine_tuning.jobs.create(
        model="smollm2-135m",
        training_file=chat.id,
        method={"type": "supervised",
                "supervised": {"hyperparameters": {"learning_rate_multiplier": "search"}}},
    )  # fmt: skip
    planned = searched.method.supervised.hyperparameters.model_extra["learning_rate_search"]
    assert planned["candidates"] == [5e-5, 1e-4, 2e-4] and planned["budget"] == 1.75
