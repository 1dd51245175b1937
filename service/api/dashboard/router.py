"""The dashboard: one page served by the API itself at ``/`` (same origin, the same API keys), its
script and styles shipped in the package; no CDN, no build step. It calls the public API only."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

router = APIRouter(include_in_schema=False)


@router.get("/")
async def dashboard() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


assets = StaticFiles(directory=STATIC)
