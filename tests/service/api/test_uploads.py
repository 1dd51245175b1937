"""OpenAI's Uploads API: a file over the single-request limit sent in parts with OpenAI's own client
(``uploads.upload_file_chunked``), each part streamed to the store; bad completions are named and
leave nothing; cancelled and expired uploads leave nothing."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import timedelta
from pathlib import Path

import openai
import pytest
from fastapi.testclient import TestClient

from service.core.clock import utcnow
from service.core.db import Database
from service.core.files.models import Upload
from service.core.files.uploads import sweep_expired
from service.core.storage import Storage
from tests.helpers.api import Backend, Team, assert_error, jsonl

PART_LIMIT = 32 * 1024  # make_settings' max_upload_part_bytes; the single-request limit is 64 KiB


def big_chat_file(min_bytes: int = 100 * 1024) -> bytes:
    rows, i = [], 0
    while len(jsonl(rows)) < min_bytes:
        rows.append({"messages": [{"role": "user", "content": f"question {i} " + "x" * 200},
                                  {"role": "assistant", "content": f"answer {i}"}]})  # fmt: skip
        i += 1
    return jsonl(rows)


def stored_parts(backend: Backend) -> list[Path]:
    folder = backend.data_dir / "storage" / "uploads"
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_a_file_over_the_request_limit_uploads_in_parts(
    openai_client: openai.OpenAI, backend: Backend
):
    content = big_chat_file()
    with pytest.raises(openai.APIStatusError) as too_big:  # one request cannot carry it
        openai_client.files.create(file=("big.jsonl", io.BytesIO(content)), purpose="fine-tune")
    assert too_big.value.status_code == 413

    upload = openai_client.uploads.upload_file_chunked(
        file=content,
        filename="big.jsonl",
        bytes=len(content),
        mime_type="application/jsonl",
        purpose="fine-tune",
        part_size=PART_LIMIT,
        md5=hashlib.md5(content).hexdigest(),
    )
    assert upload.object == "upload" and upload.status == "completed"
    assert upload.file is not None and upload.file.bytes == len(content)
    file = openai_client.files.retrieve(upload.file.id)
    assert file.status == "processed" and file.filename == "big.jsonl"
    assert openai_client.files.content(file.id).content == content  # parts in order, byte for byte
    assert stored_parts(backend) == []  # the parts went once the file was made
    job = openai_client.fine_tuning.jobs.create(model="smollm2-135m", training_file=file.id)
    assert job.training_file == file.id
    openai_client.fine_tuning.jobs.cancel(job.id)


def _start(client: TestClient, team: Team, size: int) -> str:
    body = {
        "bytes": size,
        "filename": "t.jsonl",
        "mime_type": "application/jsonl",
        "purpose": "fine-tune",
    }
    response = client.post("/v1/uploads", json=body, headers=team.headers)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    return response.json()["id"]


def _part(client: TestClient, team: Team, upload_id: str, data: bytes):
    return client.post(
        f"/v1/uploads/{upload_id}/parts", files={"data": ("blob", data)}, headers=team.headers
    )


def test_bad_completions_are_named_and_leave_nothing(
    client: TestClient, team: Team, other_team: Team, backend: Backend
):
    content = jsonl([{"text": f"line {i}"} for i in range(40)])
    half = len(content) // 2
    upload_id = _start(client, team, len(content))
    first = _part(client, team, upload_id, content[:half]).json()["id"]
    second = _part(client, team, upload_id, content[half:]).json()["id"]
    url = f"/v1/uploads/{upload_id}/complete"

    too_big = _part(client, team, upload_id, b"x" * (PART_LIMIT + 1))
    assert_error(too_big, 413, "data")
    assert len(stored_parts(backend)) == 2  # the refused part left no bytes

    files_dir = backend.data_dir / "storage" / "files"
    before = set(files_dir.iterdir()) if files_dir.exists() else set()
    for body, param in [
        ({"part_ids": [first]}, "part_ids"),  # the bytes do not add up
        ({"part_ids": [first, first]}, "part_ids"),
        ({"part_ids": [first, "part-nope"]}, "part_ids"),
        ({"part_ids": [second, first], "md5": hashlib.md5(content).hexdigest()}, "md5"),
        ({"part_ids": [first, second], "md5": "zz"}, "md5"),
    ]:
        assert_error(client.post(url, json=body, headers=team.headers), 400, param)
    assert (set(files_dir.iterdir()) if files_dir.exists() else set()) == before  # no file made
    other = client.post(url, json={"part_ids": [first, second]}, headers=other_team.headers)
    assert_error(other, 404, "upload_id", "upload_not_found")

    # The parts in order: the file, its lines checked like any upload.
    done = client.post(url, json={"part_ids": [first, second]}, headers=team.headers).json()
    assert done["status"] == "completed" and done["file"]["rows"] == 40
    again = client.post(url, json={"part_ids": [first, second]}, headers=team.headers)
    assert_error(again, 409, "upload_id", "upload_not_pending")


def test_cancelled_and_expired_uploads_leave_nothing(
    client: TestClient, team: Team, backend: Backend, database: Database
):
    cancelled = _start(client, team, 10)
    assert _part(client, team, cancelled, b"0123456789").status_code == 200
    before = len(stored_parts(backend))
    body = client.post(f"/v1/uploads/{cancelled}/cancel", headers=team.headers).json()
    assert body["status"] == "cancelled"
    assert len(stored_parts(backend)) == before - 1
    assert_error(_part(client, team, cancelled, b"late"), 409, "upload_id", "upload_not_pending")

    expiring = _start(client, team, 10)
    assert _part(client, team, expiring, b"0123456789").status_code == 200
    with database.transaction() as session:
        session.get(Upload, expiring).expires_at = utcnow() - timedelta(seconds=1)
    refused = client.post(
        f"/v1/uploads/{expiring}/complete", json={"part_ids": ["part-x"]}, headers=team.headers
    )
    assert_error(refused, 409, "upload_id", "upload_expired")
    store = Storage(client.app.state.gora.runtime.settings.storage_url)  # type: ignore[attr-defined]
    with database.transaction() as session:
        assert sweep_expired(session, store) >= 1
    with database.transaction() as session:
        assert session.get(Upload, expiring).status == "expired"
    assert not any(expiring in str(p) for p in stored_parts(backend))


def test_create_names_what_is_wrong(client: TestClient, team: Team):
    base = {
        "bytes": 10,
        "filename": "t.jsonl",
        "mime_type": "application/jsonl",
        "purpose": "fine-tune",
    }
    for change, param in [
        ({"purpose": "assistants"}, "purpose"),
        ({"bytes": 0}, "bytes"),
        ({"bytes": 10**13}, "bytes"),
    ]:
        response = client.post("/v1/uploads", json={**base, **change}, headers=team.headers)
        assert_error(response, 400, param)
    assert json.loads(client.post("/v1/uploads", json=base, headers=team.headers).text)["id"]
