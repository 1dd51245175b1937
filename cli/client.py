"""A small HTTP client of the service's API (httpx), used by the ``gora`` client commands.

It speaks the same JSON as curl or OpenAI's client would; every failure becomes a ``ClientError``
that carries the server's ``{"error": {code, message, param}}`` (or says the server is unreachable),
so the commands print one line instead of a traceback. It imports neither torch nor the web stack.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """A request that did not succeed: the server's error, or no server at all."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param

    def __str__(self) -> str:
        head = f"error {self.status}" if self.status else "error"
        if self.code:
            head += f" ({self.code})"
        tail = f" [param: {self.param}]" if self.param else ""
        return f"{head}: {self.message}{tail}"


class Unreachable(ClientError):
    pass


def _raise_for(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        response.read()
        error = response.json()["error"]
        message, code, param = error.get("message") or "", error.get("code"), error.get("param")
    except (ValueError, KeyError, TypeError):
        text = response.text.strip().splitlines()
        message, code, param = (text[0] if text else response.reason_phrase), None, None
    raise ClientError(message, status=response.status_code, code=code, param=param)


class Client:
    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        admin_token: str | None = None,
        timeout: float = 60.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.admin_token = admin_token
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)

    @classmethod
    def from_env(cls) -> Client:
        return cls(
            os.environ.get("GORA_API_URL") or DEFAULT_URL,
            os.environ.get("GORA_API_KEY") or None,
            os.environ.get("GORA_ADMIN_TOKEN") or None,
        )

    def close(self) -> None:
        self._http.close()

    # --- plumbing -------------------------------------------------------------------------
    def _headers(self, admin: bool) -> dict[str, str]:
        token = self.admin_token if admin else self.api_key
        if not token:
            variable = "GORA_ADMIN_TOKEN" if admin else "GORA_API_KEY"
            raise ClientError(f"{variable} is not set: export it (an admin creates keys)")
        return {"Authorization": f"Bearer {token}"}

    def _unreachable(self, exc: httpx.TransportError) -> Unreachable:
        reason = (
            "connection refused"
            if isinstance(exc, httpx.ConnectError)
            else str(exc) or type(exc).__name__
        )
        return Unreachable(
            f"cannot reach the GoRA API at {self.base_url} ({reason}); start it with `gora up` "
            "(API and a CPU worker) or `gora serve`, or point GORA_API_URL at a running server"
        )

    def request(
        self, method: str, path: str, *, admin: bool = False, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self._headers(admin), **kwargs.pop("headers", {})}
        try:
            response = self._http.request(method, path, headers=headers, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        _raise_for(response)
        return response

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    # --- files and jobs -------------------------------------------------------------------
    def upload_file(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as handle:
            return self._json(
                "POST",
                "/v1/files",
                files={"file": (path.name, handle, "application/jsonl")},
                data={"purpose": "fine-tune"},
            )

    def create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._json("POST", "/v1/fine_tuning/jobs", json=body)

    def list_jobs(self, limit: int = 20, after: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return self._json("GET", "/v1/fine_tuning/jobs", params=params)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/fine_tuning/jobs/{job_id}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._json("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")

    def list_events(self, job_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The job's latest ``limit`` events, oldest first."""
        page = self._json("GET", f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": limit})
        return list(reversed(page["data"]))

    def stream_events(self, job_id: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """``(event type, data)`` from the server-sent events stream, oldest first; the last is
        ``("end", {"status": ...})`` once the job has finished."""
        path = f"/v1/fine_tuning/jobs/{job_id}/events/stream"
        try:
            with self._http.stream(
                "GET", path, headers=self._headers(False), timeout=httpx.Timeout(60.0, read=None)
            ) as response:
                _raise_for(response)
                kind, data = "message", []
                for line in response.iter_lines():
                    if line == "":
                        if data:
                            yield kind, json.loads("\n".join(data))
                            if kind == "end":
                                return
                        kind, data = "message", []
                    elif line.startswith("event:"):
                        kind = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def allocation(self, job_id: str) -> dict[str, Any]:
        return self._json("GET", f"/v1/fine_tuning/jobs/{job_id}/allocation")

    def allocation_png(self, job_id: str) -> bytes:
        return self.request("GET", f"/v1/fine_tuning/jobs/{job_id}/allocation.png").content

    def download_adapter(self, job_id: str, fmt: str, out: Path) -> None:
        """Streams the adapter archive (.tar.gz) into ``out``."""
        path = f"/v1/fine_tuning/jobs/{job_id}/adapter"
        try:
            with self._http.stream(
                "GET", path, params={"format": fmt}, headers=self._headers(False)
            ) as response:
                _raise_for(response)
                with open(out, "wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    # --- admin ----------------------------------------------------------------------------
    def create_team(self, name: str, max_running_jobs: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"name": name}
        if max_running_jobs is not None:
            body["max_running_jobs"] = max_running_jobs
        return self._json("POST", "/v1/teams", json=body, admin=True)

    def create_key(self, team_id: str, name: str | None = None) -> dict[str, Any]:
        body = {"name": name} if name else {}
        return self._json("POST", f"/v1/teams/{team_id}/api_keys", json=body, admin=True)

    def delete_key(self, key_id: str) -> dict[str, Any]:
        return self._json("DELETE", f"/v1/api_keys/{key_id}", admin=True)
