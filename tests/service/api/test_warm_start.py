"""``from_checkpoint``: a new job starts from a succeeded job's adapter or a checkpoint of the same
team; what cannot fit (another model, task or label set, a job not finished) is a 400 naming why."""

from __future__ import annotations

from fastapi.testclient import TestClient

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from tests.helpers import api as support
from tests.helpers.api import Team, assert_error, create_job, jsonl, upload

JOBS = "/v1/fine_tuning/jobs"


def succeed(database: Database, job_id: str) -> None:
    with database.transaction() as session:
        assert repository.claim(session, job_id, "w1")
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )


def test_a_job_starts_from_a_finished_job_or_a_checkpoint(
    client: TestClient, team: Team, database: Database
):
    source = create_job(client, team, adapter={"type": "gora", "r_ref": 4, "gamma": 0.1})
    succeed(database, source["id"])
    warm = create_job(client, team, from_checkpoint=source["id"])
    assert warm["from_checkpoint"] == source["id"]
    assert warm["adapter"] == source["adapter"]  # the source's ranks rule: its settings come along
    with database.transaction() as session:
        stored = repository.get(session, warm["id"]).from_checkpoint
        checkpoint = repository.add_checkpoint(
            session, source["id"], 7, f"jobs/{source['id']}/checkpoints/step-7", {}
        ).id
    assert stored["adapter_key"] == f"jobs/{source['id']}/adapter/peft" and stored["step"] is None
    from_step = create_job(client, team, from_checkpoint=checkpoint)
    with database.transaction() as session:
        stored = repository.get(session, from_step["id"]).from_checkpoint
    assert stored["adapter_key"] == f"jobs/{source['id']}/checkpoint-adapters/step-7/peft"
    assert stored["step"] == 7 and from_step["from_checkpoint"] == checkpoint


def test_what_cannot_be_started_from_is_named(
    client: TestClient, team: Team, other_team: Team, database: Database
):
    training_file = upload(client, team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": training_file}

    def refused(ref: str, param: str = "from_checkpoint", **extra) -> dict:
        response = client.post(
            JOBS, json={**body, "from_checkpoint": ref, **extra}, headers=team.headers
        )
        return assert_error(response, 400, param)

    queued = create_job(client, team)
    assert "is queued" in refused(queued["id"])["message"]
    assert refused("ftjob-nope")["code"] == "job_not_found"
    assert refused("ftckpt-nope")["code"] == "checkpoint_not_found"
    theirs = create_job(client, other_team)
    succeed(database, theirs["id"])
    assert refused(theirs["id"])["code"] == "job_not_found"  # another team's is unknown here

    mine = create_job(client, team)
    succeed(database, mine["id"])
    refused(mine["id"], param="adapter", adapter={"r_ref": 16})
    classifier_data = upload(client, team, jsonl(support.CLASSIFICATION))["id"]
    classifier = create_job(client, team, model="minilm-l6", training_file=classifier_data)
    succeed(database, classifier["id"])
    other_model = {"model": "minilm-l6", "training_file": classifier_data}
    response = client.post(
        JOBS, json={**other_model, "from_checkpoint": mine["id"]}, headers=team.headers
    )
    assert assert_error(response, 400, "from_checkpoint")["code"] == "model_mismatch"
    relabelled = [{"text": r["text"], "label": "other"} for r in support.CLASSIFICATION]
    new_labels = upload(client, team, jsonl(relabelled))["id"]
    response = client.post(
        JOBS,
        json={
            "model": "minilm-l6",
            "training_file": new_labels,
            "from_checkpoint": classifier["id"],
        },
        headers=team.headers,
    )
    assert "labels" in assert_error(response, 400, "training_file")["message"]
    same_labels = create_job(
        client,
        team,
        model="minilm-l6",
        training_file=classifier_data,
        from_checkpoint=classifier["id"],
    )
    assert same_labels["from_checkpoint"] == classifier["id"]
