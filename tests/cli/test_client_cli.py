"""``gora submit/jobs/status/events/allocation/download/cancel/team/key`` against a live server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from cli.main import app as gora
from service.core.db import Database
from service.core.jobs import repository
from service.core.jobs.lifecycle import JobStatus
from tests.helpers.api import ADMIN_TOKEN, CHAT, Team, allocation_report, jsonl


def run(runner: CliRunner, env: dict[str, str], *args: str, code: int = 0):
    result = runner.invoke(gora, list(args), env=env)
    assert result.exit_code == code, (result.output, result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(CHAT))
    return path


def submit(runner: CliRunner, env: dict[str, str], data: Path, *extra: str) -> str:
    result = run(
        runner, env, "submit", "--model", "smollm2-135m", "--training-file", str(data), *extra
    )
    job_id = result.stdout.strip().splitlines()[-1]
    assert job_id.startswith("ftjob-")
    return job_id


def test_submit_uploads_the_file_and_prints_the_job_id(
    runner: CliRunner, env: dict[str, str], data: Path
):
    result = run(
        runner,
        env,
        "submit",
        "--model",
        "smollm2-135m",
        "--training-file",
        str(data),
        "--adapter-type",
        "gora",
        "--r-ref",
        "4",
        "--target-modules",
        "q_proj,v_proj",
        "--gamma",
        "0.05",
        "--epochs",
        "2",
        "--pool",
        "cpu",
        "--metadata",
        "source=cli",
    )
    assert "train.jsonl: file-" in result.stderr and "processed, 6 rows (chat)" in result.stderr
    job_id = result.stdout.strip()
    assert job_id.startswith("ftjob-")
    shown = run(runner, env, "status", job_id, "--json")
    job = json.loads(shown.stdout)
    assert job["status"] == "queued" and job["model"] == "smollm2-135m"
    assert job["adapter"]["r_ref"] == 4 and job["adapter"]["target_modules"] == ["q_proj", "v_proj"]
    assert job["adapter"]["gamma"] == 0.05 and job["hyperparameters"]["n_epochs"] == 2
    assert job["gpu"]["pool"] == "cpu" and job["metadata"] == {"source": "cli"}
    # The same file again by id, from a YAML spec; flags override the spec.
    spec = data.parent / "job.yaml"
    spec.write_text(
        f"model: smollm2-135m\ntraining_file: {job['training_file']}\n"
        "adapter: {type: lora, r_ref: 8}\nhyperparameters: {n_epochs: 1}\n"
    )
    second = run(runner, env, "submit", str(spec), "--r-ref", "2").stdout.strip()
    job = json.loads(run(runner, env, "status", second, "--json").stdout)
    assert job["adapter"]["type"] == "lora" and job["adapter"]["r_ref"] == 2
    assert job["hyperparameters"]["n_epochs"] == 1


def test_a_bad_file_shows_its_line_errors(runner: CliRunner, env: dict[str, str], tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    result = run(
        runner, env, "submit", "--model", "smollm2-135m", "--training-file", str(bad), code=1
    )
    assert "bad.jsonl: file-" in result.stderr and " error" in result.stderr
    assert "line 1" in result.stderr and "line 2" in result.stderr
    assert "was rejected" in result.stderr and result.stdout == ""


def test_server_errors_are_one_line(runner: CliRunner, env: dict[str, str], data: Path):
    result = run(runner, env, "submit", "--model", "gpt-9", "--training-file", str(data), code=1)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error 400 (model_not_found): unknown model 'gpt-9'")
    assert last.endswith("[param: model]")
    missing = run(runner, env, "status", "ftjob-nope", code=1)
    assert missing.stderr.startswith("error 404") and len(missing.stderr.strip().splitlines()) == 1
    wrong_key = run(runner, {**env, "GORA_API_KEY": "gsk-wrong"}, "jobs", code=1)
    assert wrong_key.stderr.startswith("error 401 (invalid_api_key)")
    no_spec = run(runner, env, "submit", "missing.yaml", code=1)
    assert no_spec.stderr.startswith("error: ") and "missing.yaml" in no_spec.stderr


def test_an_unreachable_server_says_where_and_how_to_start(runner: CliRunner, data: Path):
    from tests.helpers.live_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    env = {"GORA_API_URL": url, "GORA_API_KEY": "gsk-x"}
    for args in (("jobs",), ("submit", "--model", "m", "--training-file", str(data))):
        result = run(runner, env, *args, code=1)
        line = result.stderr.strip()
        assert len(line.splitlines()) == 1
        assert f"cannot reach the GoRA API at {url} (connection refused)" in line
        assert "gora up" in line


def test_jobs_status_and_cancel(runner: CliRunner, env: dict[str, str], data: Path):
    first = submit(runner, env, data)
    second = submit(runner, env, data)
    table = run(runner, env, "jobs").stdout
    assert first in table and second in table and "queued" in table
    assert table.index(second) < table.index(first)  # newest first
    status = run(runner, env, "status", first).stdout
    assert f"id               {first}" in status and "queued" in status
    assert run(runner, env, "cancel", first).stdout.strip() == f"{first} cancelled"
    events = run(runner, env, "events", first).stdout
    assert "Job cancelled before it started" in events
    # --follow on a finished job: prints its events and ends at once.
    followed = run(runner, env, "events", first, "--follow").stdout
    assert "Job cancelled before it started" in followed and f"{first} cancelled" in followed


def test_events_follow_shows_progress(
    runner: CliRunner, env: dict[str, str], data: Path, app: FastAPI, database: Database
):
    job_id = submit(runner, env, data, "--epochs", "1")
    with database.transaction() as session:
        assert repository.claim(session, job_id, "w1")
        for step in (1, 2):
            repository.add_event(
                session,
                job_id,
                f"Step {step}: training loss={1 / step:.4f}",
                type="metrics",
                data={"step": step, "epoch": step / 4, "loss": 1 / step},
            )
        repository.add_event(session, job_id, "The job has successfully completed")
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    result = run(runner, env, "events", job_id, "--follow")
    assert "training" in result.stdout and "2/4" in result.stdout and "loss 0.5000" in result.stdout
    assert "The job has successfully completed" in result.stdout
    assert result.stdout.strip().endswith(f"{job_id} succeeded")


def test_allocation_table_and_png(
    runner: CliRunner,
    env: dict[str, str],
    data: Path,
    app: FastAPI,
    database: Database,
    tmp_path: Path,
):
    job_id = submit(runner, env, data)
    not_ready = run(runner, env, "allocation", job_id, code=1)
    assert "allocation_not_ready" in not_ready.stderr
    with database.transaction() as session:
        repository.save_allocation(session, job_id, allocation_report(layers=3))
    png = tmp_path / "ranks.png"
    result = run(runner, env, "allocation", job_id, "--png", str(png))
    lines = result.stdout.splitlines()
    assert any("q_proj" in line and "down_proj" in line for line in lines)
    # rows: layer, q_proj rank (4 + i), down_proj rank (16 - 2i)
    for index in range(3):
        row = next(line for line in lines if line.strip("│ ").startswith(f"{index} "))
        cells = [cell.strip() for cell in row.strip("│").split("│")]
        assert cells == [str(index), str(4 + index), str(16 - 2 * index)]
    assert "LoRA r=8 budget" in result.stdout
    assert png.read_bytes().startswith(b"\x89PNG") and f"heatmap saved to {png}" in result.stdout


def test_download_extracts_the_adapter(
    runner: CliRunner,
    env: dict[str, str],
    data: Path,
    app: FastAPI,
    database: Database,
    tmp_path: Path,
):
    job_id = submit(runner, env, data)
    not_ready = run(runner, env, "download", job_id, "-o", str(tmp_path), code=1)
    assert "adapter_not_ready" in not_ready.stderr
    with database.transaction() as session:
        assert repository.claim(session, job_id, "w1")
        assert repository.transition(
            session, job_id, expected=JobStatus.RUNNING, to=JobStatus.SUCCEEDED
        )
    # As the worker stores it (worker/artifacts.py): jobs/<id>/adapter/<format>/...
    files = {"adapter_config.json": b'{"r": 8}', "adapter_model.safetensors": bytes(range(256))}
    for name, content in files.items():
        with app.state.gora.runtime.storage.open_write(
            f"jobs/{job_id}/adapter/peft/{name}"
        ) as handle:
            handle.write(content)
    out = tmp_path / "adapters"
    result = run(runner, env, "download", job_id, "-o", str(out))
    target = out / f"{job_id}-peft"
    assert result.stdout.strip() == str(target)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == files
    missing = run(runner, env, "download", job_id, "--format", "uniform", code=1)
    assert "adapter_not_found" in missing.stderr and "[param: format]" in missing.stderr


def test_admin_team_and_keys(runner: CliRunner, live_url: str, data: Path):
    admin = {"GORA_API_URL": live_url, "GORA_ADMIN_TOKEN": ADMIN_TOKEN}
    team_id = run(runner, admin, "team", "create", "cli-admin-team").stdout.strip()
    assert team_id.startswith("team-")
    created = run(runner, admin, "key", "create", team_id, "--name", "laptop")
    key = created.stdout.strip()
    key_id = created.stderr.split()[2]
    user = {"GORA_API_URL": live_url, "GORA_API_KEY": key}
    submit(runner, user, data)
    assert run(runner, admin, "key", "delete", key_id).stdout.strip() == f"{key_id} deleted"
    assert run(runner, user, "jobs", code=1).stderr.startswith("error 401")
    wrong = run(runner, {**admin, "GORA_ADMIN_TOKEN": "nope"}, "team", "create", "x", code=1)
    assert wrong.stderr.startswith("error 40")
    unset = run(
        runner, {"GORA_API_URL": live_url, "GORA_ADMIN_TOKEN": ""}, "team", "create", "x", code=1
    )
    assert "GORA_ADMIN_TOKEN is not set" in unset.stderr


def test_the_client_commands_do_not_import_torch():
    import subprocess
    import sys

    code = "import cli.main, cli.client, cli.commands, sys; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_team_fixture_is_usable(team: Team):
    assert team.key.startswith("gsk-")
