"""``/v1/fine_tuning/jobs``: create (with every kind of bad input), list, retrieve, idempotency,
isolation between teams, cancel."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from service.core.jobs.models import IdempotencyKey
from tests.helpers import api as support
from tests.helpers.api import TEST_POOL, Team, assert_error, create_job, jsonl, upload

JOBS = "/v1/fine_tuning/jobs"


def test_create_job_with_every_field(client: TestClient, team: Team):
    training = upload(client, team, jsonl(support.CHAT))
    validation = upload(client, team, jsonl(support.CHAT[:2]))
    job = create_job(
        client,
        team,
        training_file=training["id"],
        validation_file=validation["id"],
        suffix="my-run",
        seed=7,
        metadata={"project": "demo"},
        hyperparameters={"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5},
        adapter={"type": "gora", "r_ref": 4, "probe_steps": 3, "target_modules": ["q_proj"]},
        gpu={"pool": TEST_POOL, "count": 2},
        priority=3,
    )
    assert job["object"] == "fine_tuning.job" and job["id"].startswith("ftjob-")
    assert job["status"] == "queued" and job["phase"] is None
    assert job["model"] == "smollm2-135m"
    assert job["training_file"] == training["id"]
    assert job["validation_file"] == validation["id"]
    assert job["organization_id"] == team.id
    assert job["seed"] == 7 and job["suffix"] == "my-run" and job["priority"] == 3
    assert job["metadata"] == {"project": "demo"}
    assert job["hyperparameters"]["n_epochs"] == 2
    assert job["hyperparameters"]["batch_size"] == 4
    assert (
        job["hyperparameters"]["micro_batch_size"] * job["hyperparameters"]["grad_accum_steps"] == 4
    )
    # The library's documented default for GoRA on a causal LM (gora.train.defaults), times 0.5.
    assert job["hyperparameters"]["learning_rate"] == 0.5 * 1e-4
    assert job["method"]["type"] == "supervised"
    assert job["adapter"]["r_ref"] == 4 and job["adapter"]["r_max"] == 16  # GoraConfig default
    assert job["adapter"]["seed"] == 7
    assert job["gpu"] == {"pool": TEST_POOL, "count": 2}
    assert job["error"] is None and job["fine_tuned_model"] is None
    assert job["result_files"] == [] and job["trained_tokens"] is None
    assert isinstance(job["created_at"], int) and job["finished_at"] is None
    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json() == job


def test_auto_hyperparameters_and_method_form(client: TestClient, team: Team):
    small = upload(client, team, jsonl(support.CHAT[:3]))
    job = create_job(
        client,
        team,
        training_file=small["id"],
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 5}}},
    )
    assert job["hyperparameters"]["n_epochs"] == 5
    assert job["hyperparameters"]["batch_size"] == 3  # auto: at most the rows there are
    assert job["hyperparameters"]["learning_rate_multiplier"] == 1.0
    auto = create_job(client, team, training_file=small["id"])["hyperparameters"]
    # "auto" epochs repeat a 3-row file until ~1000 examples are seen, at most 10 passes.
    assert auto["n_epochs"] == 10 and auto["learning_rate"] == 1e-4


def test_the_same_hyperparameters_in_both_places_are_one(client: TestClient, team: Team):
    hp = {"n_epochs": 2, "batch_size": 8}
    job = create_job(
        client,
        team,
        hyperparameters=hp,
        method={"type": "supervised", "supervised": {"hyperparameters": hp}},
    )
    assert job["hyperparameters"]["n_epochs"] == 2 and job["hyperparameters"]["batch_size"] == 8
    assert job["method"]["supervised"]["hyperparameters"] == job["hyperparameters"]


def test_auto_learning_rate_depends_on_method_and_task(client: TestClient, team: Team):
    chat = upload(client, team, jsonl(support.CHAT[:3]))
    classes = upload(client, team, jsonl(support.CLASSIFICATION))
    rates = {
        (kind, model): create_job(
            client, team, model=model, training_file=data["id"], adapter={"type": kind}
        )["hyperparameters"]["learning_rate"]
        for kind in ("gora", "lora")
        for model, data in (("smollm2-135m", chat), ("minilm-l6", classes))
    }
    assert rates == {
        ("gora", "smollm2-135m"): 1e-4,
        ("lora", "smollm2-135m"): 5e-4,  # measured on arithmetic (docs/benchmarks.md)
        ("gora", "minilm-l6"): 2e-4,  # measured on R8 (docs/training.md)
        ("lora", "minilm-l6"): 2e-4,
    }


def test_classification_job_on_the_encoder(client: TestClient, team: Team):
    data = upload(client, team, jsonl(support.CLASSIFICATION))
    job = create_job(client, team, model="minilm-l6", training_file=data["id"])
    assert job["status"] == "queued"


def _refused(client: TestClient, team: Team, body: dict, param: str, code: str | None = None):
    response = client.post(JOBS, json=body, headers=team.headers)
    return assert_error(response, 400, param, code)


def test_bad_inputs_name_the_field(client: TestClient, team: Team, other_team: Team):
    good = upload(client, team, jsonl(support.CHAT))["id"]
    base = {"model": "smollm2-135m", "training_file": good}
    _refused(client, team, {**base, "model": "gpt-4o"}, "model", "model_not_found")
    _refused(client, team, {**base, "model": "/etc/passwd"}, "model", "model_not_found")
    _refused(client, team, {**base, "model": "../models/x"}, "model", "model_not_found")
    _refused(client, team, {"training_file": good}, "model")
    _refused(client, team, {"model": "smollm2-135m"}, "training_file")
    _refused(client, team, {**base, "training_file": "file-missing"}, "training_file")
    theirs = upload(client, other_team, jsonl(support.CHAT))["id"]
    _refused(client, team, {**base, "training_file": theirs}, "training_file", "file_not_found")
    broken = upload(client, team, b"not json\n")["id"]
    error = _refused(client, team, {**base, "training_file": broken}, "training_file")
    assert error["code"] == "file_not_processed" and "line 1" in error["message"]
    _refused(client, team, {**base, "validation_file": "file-missing"}, "validation_file")
    text = upload(client, team, jsonl(support.TEXT))["id"]
    _refused(client, team, {**base, "validation_file": text}, "validation_file")
    classes = upload(client, team, jsonl(support.CLASSIFICATION))["id"]
    _refused(client, team, {**base, "training_file": classes}, "model", "model_task_mismatch")
    _refused(client, team, {**base, "hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs")
    _refused(
        client, team, {**base, "hyperparameters": {"n_epochs": "3"}}, "hyperparameters.n_epochs"
    )
    _refused(
        client,
        team,
        {**base, "hyperparameters": {"learning_rate_multiplier": -1}},
        "hyperparameters.learning_rate_multiplier",
    )
    _refused(client, team, {**base, "hyperparameters": {"lr": 1}}, "hyperparameters.lr")
    both = {
        **base,
        "hyperparameters": {"n_epochs": 1},
        "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
    }
    _refused(client, team, both, "hyperparameters")
    unknown = _refused(client, team, {**base, "method": {"type": "reinforcement"}}, "method.type")
    assert unknown["code"] == "unsupported_method" and "supervised" in unknown["message"]
    _refused(client, team, {**base, "adapter": {"r_ref": 0}}, "adapter.r_ref")
    _refused(client, team, {**base, "adapter": {"r_ref": 10**9}}, "adapter.r_ref")
    _refused(client, team, {**base, "adapter": {"alpha": 0}}, "adapter.alpha", "invalid_adapter")
    _refused(client, team, {**base, "adapter": {"importance": "vibes"}}, "adapter.importance")
    # The field to change is named by the library's typed error, not found in its message.
    _refused(client, team, {**base, "adapter": {"r_min": 9, "r_ref": 8}}, "adapter.r_min")
    _refused(client, team, {**base, "adapter": {"r_max": 4, "r_ref": 8}}, "adapter.r_max")
    _refused(client, team, {**base, "adapter": {"rank": 8}}, "adapter.rank")
    _refused(client, team, {**base, "adapter": {"type": "ia3"}}, "adapter.type")
    _refused(client, team, {**base, "gpu": {"pool": "h100"}}, "gpu.pool", "unknown_pool")
    _refused(client, team, {**base, "gpu": {"count": 0}}, "gpu.count")
    _refused(client, team, {**base, "gpu": {"count": 9}}, "gpu.count")
    _refused(client, team, {**base, "suffix": "has space"}, "suffix")
    _refused(client, team, {**base, "seed": -1}, "seed")
    _refused(client, team, {**base, "metadata": {"k": 1}}, "metadata.k")
    too_many = {f"k{i}": "v" for i in range(17)}
    _refused(client, team, {**base, "metadata": too_many}, "metadata")
    _refused(client, team, {**base, "priority": 10}, "priority")
    _refused(client, team, {**base, "unknown_field": 1}, "unknown_field")
    # None of the refused requests created a job.
    assert client.get(JOBS, headers=team.headers).json()["data"] == []


def test_idempotency_key_returns_the_first_job(client: TestClient, team: Team):
    training = upload(client, team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": training}
    headers = {**team.headers, "Idempotency-Key": "retry-1"}
    first = client.post(JOBS, json=body, headers=headers)
    again = client.post(JOBS, json=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    changed = client.post(JOBS, json={**body, "suffix": "other"}, headers=headers)
    assert_error(changed, 409, "Idempotency-Key", "idempotency_key_reused")
    other_key = client.post(JOBS, json=body, headers={**team.headers, "Idempotency-Key": "retry-2"})
    assert other_key.json()["id"] != first.json()["id"]
    listed = client.get(JOBS, headers=team.headers).json()["data"]
    assert sorted(j["id"] for j in listed) == sorted([first.json()["id"], other_key.json()["id"]])


def test_an_idempotency_key_is_forgotten_after_its_ttl(
    client: TestClient, team: Team, database: Database
):
    training = upload(client, team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": training}
    headers = {**team.headers, "Idempotency-Key": "daily-run"}
    first = client.post(JOBS, json=body, headers=headers).json()["id"]
    with database.transaction() as session:  # a day and a minute later
        record = session.get(IdempotencyKey, (team.id, "daily-run"))
        record.created_at = datetime.now(UTC) - timedelta(hours=24, minutes=1)
    second = client.post(JOBS, json={**body, "suffix": "next"}, headers=headers)
    assert second.status_code == 200 and second.json()["id"] != first  # a new job, no 409
    again = client.post(JOBS, json={**body, "suffix": "next"}, headers=headers)
    assert again.json()["id"] == second.json()["id"]  # the key now stands for the new job
    assert client.get(f"{JOBS}/{first}", headers=team.headers).status_code == 200


def test_idempotency_keys_belong_to_a_team(client: TestClient, team: Team, other_team: Team):
    mine = create_job(client, team)
    theirs_file = upload(client, other_team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": theirs_file}
    theirs = client.post(
        JOBS, json=body, headers={**other_team.headers, "Idempotency-Key": "shared"}
    )
    again = client.post(
        JOBS,
        json={"model": "smollm2-135m", "training_file": mine["training_file"]},
        headers={**team.headers, "Idempotency-Key": "shared"},
    )
    assert theirs.status_code == again.status_code == 200
    assert theirs.json()["id"] != again.json()["id"]


def test_concurrent_retries_with_one_key_create_one_job(client: TestClient, team: Team):
    training = upload(client, team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": training}
    headers = {**team.headers, "Idempotency-Key": "race"}
    results: list = []

    def submit() -> None:
        results.append(client.post(JOBS, json=body, headers=headers))

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200] * 4
    assert len({r.json()["id"] for r in results}) == 1
    assert len(client.get(JOBS, headers=team.headers).json()["data"]) == 1


def test_bad_idempotency_key_header(client: TestClient, team: Team):
    training = upload(client, team, jsonl(support.CHAT))["id"]
    body = {"model": "smollm2-135m", "training_file": training}
    response = client.post(JOBS, json=body, headers={**team.headers, "Idempotency-Key": "x" * 300})
    assert_error(response, 400, "Idempotency-Key")


def test_list_paginates_and_filters_by_metadata(client: TestClient, team: Team):
    training = upload(client, team, jsonl(support.CHAT))["id"]
    ids = [
        create_job(client, team, training_file=training, metadata={"run": str(i % 2)})["id"]
        for i in range(5)
    ]
    newest_first = list(reversed(ids))
    page = client.get(f"{JOBS}?limit=2", headers=team.headers).json()
    assert page["object"] == "list" and page["has_more"] is True
    seen = [j["id"] for j in page["data"]]
    while page["has_more"]:
        page = client.get(f"{JOBS}?limit=2&after={seen[-1]}", headers=team.headers).json()
        seen += [j["id"] for j in page["data"]]
    assert seen == newest_first
    odd = client.get(f"{JOBS}?metadata[run]=1", headers=team.headers).json()["data"]
    assert [j["id"] for j in odd] == [ids[3], ids[1]]
    none = client.get(f"{JOBS}?metadata[run]=7", headers=team.headers).json()["data"]
    assert none == []
    assert_error(client.get(f"{JOBS}?limit=500", headers=team.headers), 400, "limit")
    assert_error(client.get(f"{JOBS}?after=ftjob-nope", headers=team.headers), 400, "after")
    bad_key = client.get(f"{JOBS}?metadata[a%20b]=1", headers=team.headers)
    assert_error(bad_key, 400, "metadata[a b]")


def test_another_teams_job_answers_404_everywhere(client: TestClient, team: Team, other_team: Team):
    job = create_job(client, team)
    paths = [
        ("get", ""),
        ("post", "/cancel"),
        ("get", "/events"),
        ("get", "/events/stream"),
        ("get", "/checkpoints"),
        ("get", "/allocation"),
        ("get", "/allocation.png"),
        ("get", "/adapter"),
    ]
    for method, suffix in paths:
        response = getattr(client, method)(
            f"{JOBS}/{job['id']}{suffix}", headers=other_team.headers
        )
        assert_error(response, 404, "job_id", "job_not_found")
    assert client.get(JOBS, headers=other_team.headers).json()["data"] == []
    # The other team's cancel did nothing.
    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()["status"] == "queued"


def test_unknown_and_malformed_job_ids_are_404(client: TestClient, team: Team):
    for job_id in ("ftjob-doesnotexist", "nonsense", "ftjob-%00"):
        assert_error(client.get(f"{JOBS}/{job_id}", headers=team.headers), 404, "job_id")


def test_cancel_a_queued_job(client: TestClient, team: Team):
    job = create_job(client, team)
    cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=team.headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["finished_at"] is not None
    # A cancelled job has finished: cancelling it again is a conflict, as for any finished job.
    again = client.post(f"{JOBS}/{job['id']}/cancel", headers=team.headers)
    assert_error(again, 409, "job_id", "job_not_cancellable")
    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()["status"] == "cancelled"
    events = client.get(f"{JOBS}/{job['id']}/events", headers=team.headers).json()["data"]
    assert events[0]["message"] == "Job cancelled before it started"
    assert sum("cancelled" in e["message"] for e in events) == 1


def test_cancel_a_running_job_asks_the_worker(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "worker-1")
    cancelled = client.post(f"{JOBS}/{job['id']}/cancel", headers=team.headers).json()
    assert cancelled["status"] == "cancelling" and cancelled["finished_at"] is None
    with database.transaction() as session:  # the worker stops and says so
        assert repository.transition(
            session, job["id"], expected=JobStatus.CANCELLING, to=JobStatus.CANCELLED
        )
    final = client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()
    assert final["status"] == "cancelled" and final["finished_at"] is not None


def test_finished_jobs_cannot_be_cancelled(client: TestClient, team: Team, database: Database):
    job = create_job(client, team)
    with database.transaction() as session:
        assert repository.claim(session, job["id"], "worker-1")
        assert repository.transition(
            session, job["id"], expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    refused = client.post(f"{JOBS}/{job['id']}/cancel", headers=team.headers)
    assert_error(refused, 409, "job_id", "job_not_cancellable")
    assert client.get(f"{JOBS}/{job['id']}", headers=team.headers).json()["status"] == "succeeded"


def _raw(client: TestClient, team: Team, body: bytes):
    headers = {**team.headers, "Content-Type": "application/json"}
    return client.post(JOBS, content=body, headers=headers)


def test_bodies_json_cannot_parse_are_400s_that_say_why(client: TestClient, team: Team):
    """json.loads fails in ways FastAPI answered with a bare http_error (or a character offset as
    the param): each is an invalid_json error with no field to blame, and says what is wrong."""
    truncated = assert_error(_raw(client, team, b'{"model": "smollm2-135m", "tra'), 400, None)
    assert truncated["code"] == "invalid_json" and "at character" in truncated["message"]
    not_utf8 = assert_error(_raw(client, team, b'{"model": "caf\xe9"}'), 400, None, "invalid_json")
    assert "UTF-8" in not_utf8["message"]
    deep = assert_error(
        _raw(client, team, b"[" * 50_000 + b"]" * 50_000), 400, None, "invalid_json"
    )
    assert "nested too deeply" in deep["message"]


def test_a_number_too_long_to_parse_names_its_field(client: TestClient, team: Team):
    good = upload(client, team, jsonl(support.CHAT))["id"]
    body = b'{"model": "smollm2-135m", "training_file": "%s", "seed": %s}' % (
        good.encode(),
        b"9" * 5000,
    )
    error = assert_error(_raw(client, team, body), 400, "seed", "invalid_request")
    assert "5000 digits" in error["message"]
    nested = b'{"model": "smollm2-135m", "training_file": "%s", "hyperparameters": ' % good.encode()
    error = assert_error(
        _raw(client, team, nested + b'{"n_epochs": ' + b"1" * 4500 + b"}}"),
        400,
        "hyperparameters.n_epochs",
    )
    assert "4500 digits" in error["message"]


def test_pause_and_resume_as_openai_has_them(client: TestClient, team: Team, database: Database):
    """Queued: paused at once, resumed to the queue. Running: pausing until the worker has saved a
    checkpoint at its next step; a finished or cancelling job refuses, naming why."""
    queued = create_job(client, team)
    paused = client.post(f"{JOBS}/{queued['id']}/pause", headers=team.headers)
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = client.post(f"{JOBS}/{queued['id']}/pause", headers=team.headers)
    assert again.json()["status"] == "paused"  # already where the request leads
    resumed = client.post(f"{JOBS}/{queued['id']}/resume", headers=team.headers)
    assert resumed.status_code == 200 and resumed.json()["status"] == "queued"
    running = create_job(client, team)
    with database.transaction() as session:
        assert repository.claim(session, running["id"], "worker-1")
    pausing = client.post(f"{JOBS}/{running['id']}/pause", headers=team.headers).json()
    assert pausing["status"] == "pausing" and pausing["finished_at"] is None
    refused = client.post(f"{JOBS}/{running['id']}/resume", headers=team.headers)
    assert_error(refused, 409, "job_id", "job_not_paused")
    with database.transaction() as session:  # the worker saved its checkpoint and let go
        assert repository.transition(
            session, running["id"], expected=JobStatus.PAUSING, to=JobStatus.PAUSED, worker_id=None
        )
    cancelled = client.post(f"{JOBS}/{running['id']}/cancel", headers=team.headers).json()
    assert cancelled["status"] == "cancelled"
    refused = client.post(f"{JOBS}/{running['id']}/pause", headers=team.headers)
    assert_error(refused, 409, "job_id", "job_not_pausable")
    messages = [
        e["message"]
        for e in client.get(f"{JOBS}/{running['id']}/events", headers=team.headers).json()["data"]
    ]
    assert messages[:2] == ["Job cancelled while paused", messages[1]]
    assert any(m.startswith("Pause requested") for m in messages)


def test_openai_client_pauses_and_resumes(live_url: str, team: Team, client: TestClient):
    from openai import OpenAI

    job = create_job(client, team)
    openai = OpenAI(base_url=f"{live_url}/v1", api_key=team.key)
    assert openai.fine_tuning.jobs.pause(job["id"]).status == "paused"
    assert openai.fine_tuning.jobs.resume(job["id"]).status == "queued"


def test_adapter_settings_list_defaults_and_ranges(client, team):
    body = client.get("/v1/fine_tuning/adapter_settings", headers=team.headers).json()
    settings = {s["name"]: s for s in body["data"]}
    assert settings["r_ref"] == {
        "name": "r_ref",
        "default": 8,
        "minimum": 1,
        "maximum": 4096,
        "type": "integer",
    }
    assert settings["type"]["choices"] == ["gora", "lora"] and settings["type"]["default"] == "gora"
    assert settings["gamma"]["default"] == 0.05 and settings["gamma"]["minimum"] == 0.0
    assert settings["r_min"]["default_rule"] == "r_ref / 2"
    assert settings["lora_dropout"]["exclusiveMaximum"] == 1.0
    # Every field of the library's config, nothing else.
    from gora.config import GoraConfig

    assert list(settings) == [f for f in GoraConfig.__dataclass_fields__]


def test_the_job_list_gives_queued_jobs_their_place_in_the_queue(client, team):
    from tests.helpers.api import create_job

    first, second = create_job(client, team), create_job(client, team)
    urgent = create_job(client, team, priority=9)
    listed = {
        j["id"]: j for j in client.get("/v1/fine_tuning/jobs", headers=team.headers).json()["data"]
    }
    places = [listed[j["id"]]["queue_position"] for j in (urgent, first, second)]
    assert places[0] < places[1] < places[2]  # priority first, then the oldest
    client.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=team.headers)
    listed = {
        j["id"]: j for j in client.get("/v1/fine_tuning/jobs", headers=team.headers).json()["data"]
    }
    assert listed[first["id"]]["queue_position"] is None  # no longer waiting
    assert listed[second["id"]]["queue_position"] == places[2] - 1


def test_a_job_keeps_its_spec_as_submitted_beside_the_resolved_one(client, team):
    from tests.helpers.api import create_job

    job = create_job(client, team, hyperparameters={"n_epochs": "auto"}, adapter={"r_ref": 4})
    assert job["submitted"]["hyperparameters"] == {"n_epochs": "auto"}
    assert job["submitted"]["adapter"] == {"r_ref": 4} and "gpu" not in job["submitted"]
    assert isinstance(job["hyperparameters"]["n_epochs"], int)  # resolved
    again = client.get(f"/v1/fine_tuning/jobs/{job['id']}", headers=team.headers).json()
    assert again["submitted"] == job["submitted"]
