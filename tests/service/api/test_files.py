"""``/v1/files``: streamed uploads with a size limit, line validation, listing, isolation, delete."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from service.core.db import Database
from service.core.files import service as files_service
from service.core.files.models import StoredFile
from tests.helpers import api as support
from tests.helpers.api import Backend, Team, assert_error, jsonl, upload

LIMIT = 64 * 1024  # make_settings' max_upload_bytes


def stored_files(backend: Backend) -> set[str]:
    folder = backend.data_dir / "storage" / "files"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


@pytest.mark.parametrize(
    ("rows", "data_format"),
    [
        (support.CHAT, "chat"),
        (support.PROMPT_COMPLETION, "prompt_completion"),
        (support.TEXT, "text"),
        (support.CLASSIFICATION, "classification"),
    ],
)
def test_upload_each_format(client: TestClient, team: Team, rows: list, data_format: str):
    body = upload(client, team, jsonl(rows))
    assert body["object"] == "file" and body["id"].startswith("file-")
    assert body["status"] == "processed" and body["status_details"] is None
    assert body["format"] == data_format
    assert body["rows"] == len(rows)
    assert body["bytes"] == len(jsonl(rows))
    assert body["purpose"] == "fine-tune" and body["filename"] == "train.jsonl"
    if data_format == "classification":
        assert body["labels"] == ["neg", "pos"]
    assert client.get(f"/v1/files/{body['id']}", headers=team.headers).json() == body


def test_upload_is_stored_byte_for_byte(client: TestClient, team: Team, backend: Backend):
    content = jsonl(support.CHAT)
    body = upload(client, team, content)
    assert (backend.data_dir / "storage" / "files" / body["id"]).read_bytes() == content


def test_malformed_lines_are_reported_with_line_and_field(client: TestClient, team: Team):
    lines = [
        json.dumps(support.CHAT[0]),
        "not json",
        json.dumps({"messages": [{"role": "robot", "content": "x"}]}),
        "",
        json.dumps({"prompt": "p", "completion": "c"}),
    ]
    body = upload(client, team, "\n".join(lines).encode(), filename="bad.jsonl")
    assert body["status"] == "error"
    assert body["rows"] == 1
    assert [e["line"] for e in body["errors"]] == [2, 3, 5]
    assert body["errors"][1]["field"] == "messages[0].role"
    assert "line 2" in body["status_details"] and "messages[0].role" in body["status_details"]


def test_an_empty_file_is_an_error(client: TestClient, team: Team):
    body = upload(client, team, b"\n\n")
    assert body["status"] == "error" and "no rows" in body["status_details"]


def test_filename_keeps_only_its_last_component(client: TestClient, team: Team):
    body = _multipart(
        [("purpose", None, b"fine-tune"), ("file", "../../etc/x\x00.jsonl", jsonl(support.TEXT))]
    )
    response = client.post(
        "/v1/files",
        content=body,
        headers={**team.headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["filename"] == "x.jsonl"


def test_upload_over_the_limit_is_413_and_leaves_nothing(
    client: TestClient, team: Team, backend: Backend
):
    before = stored_files(backend)
    big = b'{"text": "' + b"x" * LIMIT + b'"}\n'
    response = client.post(
        "/v1/files",
        files={"file": ("big.jsonl", big)},
        data={"purpose": "fine-tune"},
        headers=team.headers,
    )
    assert_error(response, 413, "file", "file_too_large")
    assert stored_files(backend) == before
    assert client.get("/v1/files", headers=team.headers).json()["data"] == []


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    body = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
        body += content + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_streamed_upload_without_length_stops_at_the_limit(
    client: TestClient, team: Team, backend: Backend
):
    """A chunked body declares no size: the limit is enforced while reading it."""
    body = _multipart([("purpose", None, b"fine-tune"), ("file", "big.jsonl", b"x" * (LIMIT * 3))])
    before = stored_files(backend)

    def chunks():
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = client.post(
        "/v1/files",
        content=chunks(),
        headers={**team.headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert_error(response, 413, "file", "file_too_large")
    assert stored_files(backend) == before


def test_bad_upload_requests(client: TestClient, team: Team, backend: Backend):
    before = stored_files(backend)
    wrong_purpose = client.post(
        "/v1/files",
        files={"file": ("a.jsonl", jsonl(support.TEXT))},
        data={"purpose": "assistants"},
        headers=team.headers,
    )
    assert_error(wrong_purpose, 400, "purpose")
    no_purpose = client.post(
        "/v1/files", files={"file": ("a.jsonl", jsonl(support.TEXT))}, headers=team.headers
    )
    assert_error(no_purpose, 400, "purpose")
    no_file = client.post("/v1/files", data={"purpose": "fine-tune"}, headers=team.headers)
    assert_error(no_file, 400, "file")
    not_multipart = client.post("/v1/files", json={"purpose": "fine-tune"}, headers=team.headers)
    assert_error(not_multipart, 400, "file")
    truncated = _multipart([("file", "a.jsonl", jsonl(support.TEXT))])[:-20]
    cut = client.post(
        "/v1/files",
        content=truncated,
        headers={**team.headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert_error(cut, 400, "file")
    two_files = _multipart([("file", "a.jsonl", b"{}"), ("file", "b.jsonl", b"{}")])
    double = client.post(
        "/v1/files",
        content=two_files,
        headers={**team.headers, "Content-Type": "multipart/form-data; boundary=b0undary"},
    )
    assert_error(double, 400, "file")
    # None of the refused uploads left bytes behind.
    assert stored_files(backend) == before


def test_list_paginates_newest_first(client: TestClient, team: Team):
    ids = [upload(client, team, jsonl(support.TEXT))["id"] for _ in range(5)]
    newest_first = list(reversed(ids))
    first = client.get("/v1/files?limit=2", headers=team.headers).json()
    assert [f["id"] for f in first["data"]] == newest_first[:2]
    assert first["has_more"] is True and first["last_id"] == newest_first[1]
    second = client.get(f"/v1/files?limit=2&after={first['last_id']}", headers=team.headers).json()
    assert [f["id"] for f in second["data"]] == newest_first[2:4]
    third = client.get(f"/v1/files?limit=2&after={second['last_id']}", headers=team.headers).json()
    assert [f["id"] for f in third["data"]] == newest_first[4:]
    assert third["has_more"] is False
    ascending = client.get("/v1/files?order=asc&limit=100", headers=team.headers).json()
    assert [f["id"] for f in ascending["data"]] == ids
    assert_error(client.get("/v1/files?limit=0", headers=team.headers), 400, "limit")
    assert_error(client.get("/v1/files?limit=101", headers=team.headers), 400, "limit")
    assert_error(client.get("/v1/files?after=file-nope", headers=team.headers), 400, "after")


def test_teams_see_only_their_own_files(client: TestClient, team: Team, other_team: Team):
    mine = upload(client, team, jsonl(support.TEXT))
    assert client.get("/v1/files", headers=other_team.headers).json()["data"] == []
    for method in ("get", "delete"):
        response = getattr(client, method)(f"/v1/files/{mine['id']}", headers=other_team.headers)
        assert_error(response, 404, "file_id", "file_not_found")
    # The other team's failed delete changed nothing.
    assert client.get(f"/v1/files/{mine['id']}", headers=team.headers).status_code == 200


def test_delete_file(client: TestClient, team: Team, backend: Backend, database: Database):
    body = upload(client, team, jsonl(support.TEXT))
    path = backend.data_dir / "storage" / "files" / body["id"]
    assert path.exists()
    deleted = client.delete(f"/v1/files/{body['id']}", headers=team.headers)
    assert deleted.json() == {"id": body["id"], "object": "file", "deleted": True}
    assert not path.exists()
    assert_error(client.get(f"/v1/files/{body['id']}", headers=team.headers), 404, "file_id")
    assert_error(client.delete(f"/v1/files/{body['id']}", headers=team.headers), 404, "file_id")
    with database.transaction() as session:  # the row stays for the jobs that name it
        assert session.get(StoredFile, body["id"]).deleted_at is not None


def test_a_file_used_by_an_unfinished_job_cannot_be_deleted(
    client: TestClient, team: Team, backend: Backend
):
    job = support.create_job(client, team)
    refused = client.delete(f"/v1/files/{job['training_file']}", headers=team.headers)
    assert_error(refused, 409, "file_id", "file_in_use")
    assert Path(backend.data_dir / "storage" / "files" / job["training_file"]).exists()
    client.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel", headers=team.headers)
    allowed = client.delete(f"/v1/files/{job['training_file']}", headers=team.headers)
    assert allowed.status_code == 200


def test_lines_the_json_parser_refuses_are_line_errors_on_a_live_connection(
    live_url: str, team: Team
):
    """A 5,000-digit integer or 100,000 nested brackets made the upload a 500 (json.loads raises
    ValueError or RecursionError, not JSONDecodeError), and the next request on that keep-alive
    connection was sometimes reset. Both are line errors, and the connection stays usable."""
    content = b"\n".join(
        [
            json.dumps(support.CHAT[0]).encode(),
            b'{"prompt": "p", "completion": "c", "n": ' + b"9" * 5000 + b"}",
            b"[" * 20_000 + b"]" * 20_000,  # the upload limit here is 64 KiB
        ]
    )
    with httpx.Client(base_url=live_url, headers=team.headers, timeout=30) as http:
        files = {"file": ("hostile.jsonl", content, "application/jsonl")}
        response = http.post("/v1/files", files=files, data={"purpose": "fine-tune"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "error" and body["rows"] == 1
        assert [e["line"] for e in body["errors"]] == [2, 3]
        assert "nested too deeply" in body["errors"][1]["message"]
        after = http.get(f"/v1/files/{body['id']}")  # the same keep-alive connection
        assert after.status_code == 200 and after.json()["id"] == body["id"]


def test_content_returns_the_stored_bytes(client: TestClient, team: Team, other_team: Team):
    content = jsonl(support.CHAT)
    body = upload(client, team, content, "données v2.jsonl")
    response = client.get(f"/v1/files/{body['id']}/content", headers=team.headers)
    assert response.status_code == 200 and response.content == content
    disposition = response.headers["content-disposition"]
    assert 'filename="donn_es v2.jsonl"' in disposition  # an ASCII fallback, and the exact name
    assert "filename*=UTF-8''donn%C3%A9es%20v2.jsonl" in disposition
    other = client.get(f"/v1/files/{body['id']}/content", headers=other_team.headers)
    assert_error(other, 404, "file_id", "file_not_found")
    client.delete(f"/v1/files/{body['id']}", headers=team.headers)
    gone = client.get(f"/v1/files/{body['id']}/content", headers=team.headers)
    assert_error(gone, 404, "file_id", "file_not_found")


def test_a_jobs_result_file_cannot_be_trained_on(
    client: TestClient, team: Team, backend: Backend, database: Database
):
    runtime = client.app.state.gora.runtime  # type: ignore[attr-defined]
    csv = b"step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy\n1,2.5,0.2,,\n"
    with runtime.storage.open_write("files/file-" + "c" * 24) as handle:
        handle.write(csv)
    with database.transaction() as session:
        files_service.record_result(
            session, team.id, "file-" + "c" * 24, "step_metrics.csv", len(csv), 1
        )
    listed = client.get("/v1/files?purpose=fine-tune-results", headers=team.headers).json()
    assert [(f["filename"], f["purpose"]) for f in listed["data"]] == [
        ("step_metrics.csv", "fine-tune-results")
    ]
    content = client.get(f"/v1/files/file-{'c' * 24}/content", headers=team.headers)
    assert content.content == csv and content.headers["content-type"].startswith("text/csv")
    refused = client.post(
        "/v1/fine_tuning/jobs",
        json={"model": "smollm2-135m", "training_file": "file-" + "c" * 24},
        headers=team.headers,
    )
    assert_error(refused, 400, "training_file", "invalid_file_purpose")
