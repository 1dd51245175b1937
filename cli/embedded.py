"""``gora up``: the API and one CPU worker on this machine, as two processes.

SQLite and the filesystem broker by default; whatever GORA_* says otherwise is honoured, since it is
the same code as production: a real Celery worker in its own process, the API served by uvicorn.
"""

from __future__ import annotations

import signal
import subprocess
import sys


def run_embedded(host: str, port: int) -> None:
    import uvicorn

    from service.core.migrate import upgrade
    from service.core.settings import get_settings

    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.is_embedded_sqlite:
        upgrade(settings.database_url)
    worker = subprocess.Popen([sys.executable, "-m", "cli.main", "worker", "--pool", "cpu"])
    try:
        uvicorn.run("service.api.app:create_app", factory=True, host=host, port=port)
    finally:
        stop_process(worker)


def stop_process(process: subprocess.Popen, timeout_s: float = 20) -> None:
    """SIGTERM (Celery's warm shutdown: a running job's message goes back), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
