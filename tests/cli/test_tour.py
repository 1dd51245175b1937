"""``make run``'s tour (scripts/tour.py) with tiny settings: gora up in the background on a temp data dir
and a free port, one GoRA job on SmolLM2 to the download, both answers; then a second run's reuse of
the running service and the saved key, and ``--stop``."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from rich.console import Console

from scripts.tour import ROOT, _alive, _load_state, start_service, team_key
from tests.helpers.live_server import free_port
from tests.helpers.models import session_cache_dir

pytestmark = pytest.mark.slow
TOUR = str(ROOT / "scripts" / "tour.py")
TINY = ["--rows", "16", "--max-steps", "2", "--probe-steps", "2", "--max-seq-length", "96"]


def test_tour_runs_a_job_to_the_download_and_compares_answers(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GORA_")}
    env.update(OMP_NUM_THREADS="1", GORA_CACHE_DIR=str(session_cache_dir()), COLUMNS="200")
    port = free_port()
    args = [sys.executable, TOUR, "--data-dir", str(tmp_path), "--port", str(port)]
    pid = None
    try:
        done = subprocess.run(
            [*args, *TINY], env=env, cwd=ROOT, capture_output=True, text=True, timeout=240
        )
        log = (tmp_path / "up.log").read_text(errors="replace")[-3000:]
        assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:], log)
        out = done.stdout
        for expected in ("gora up ready", "team: created", "succeeded", "rank allocation"):
            assert expected in out, out
        assert "adapter downloaded to" in out and "base:" in out and "GoRA:" in out, out
        assert "Traceback" not in out + done.stderr
        assert list((tmp_path / "tour").glob("ftjob-*-allocation.png"))
        (adapter,) = (tmp_path / "tour").glob("ftjob-*-peft")
        assert (adapter / "adapter_model.safetensors").is_file()
        # The service keeps running; a second run finds it and the team's key.
        state = _load_state(tmp_path)
        pid = int((tmp_path / "up.pid").read_text())
        assert _alive(pid, group=True)
        quiet = Console(quiet=True)
        url = start_service(tmp_path, port, state, quiet, 10)
        assert url == f"http://127.0.0.1:{port}"
        assert team_key(url, state, tmp_path, quiet) == state["api_key"]
    finally:
        stopped = subprocess.run(
            [*args, "--stop"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    assert "stopped gora up" in stopped.stdout, stopped
    deadline = time.monotonic() + 10
    # The worker and its job's processes went with it.
    while pid is not None and _alive(pid, group=True):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert not (tmp_path / "up.pid").exists()
