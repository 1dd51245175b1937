"""The import boundaries between the parts: the API loads no torch and no worker code, the worker's
training child loads no web framework, the core loads neither, and the gora command loads none of
them until a command runs. Each is checked in a fresh interpreter (this test process may already
hold any of them from other tests)."""

from __future__ import annotations

import subprocess
import sys

WEB = {"fastapi", "starlette", "uvicorn"}
TRAINING = {"torch", "transformers", "peft"}


def _modules_after_import(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return {name.split(".")[0] for name in result.stdout.split()} | set(result.stdout.split())


def test_the_api_loads_no_torch_and_no_worker_code():
    modules = _modules_after_import("import service.api.app; service.api.app.create_app")
    assert "service.api.app" in modules
    assert not modules & TRAINING
    assert "worker" not in modules


def test_the_training_child_loads_no_web_framework():
    modules = _modules_after_import("import worker.child")
    assert "worker.child" in modules and "torch" in modules
    assert not modules & WEB
    assert "service.api" not in modules


def test_the_core_loads_no_web_framework_and_no_torch():
    core = ["service.core.jobs.service", "service.core.files.service", "service.core.teams.service"]
    modules = _modules_after_import("import " + ", ".join(core))
    # anyio too: the training child gets it only from transformers' hub client, never from ours.
    assert not modules & (WEB | TRAINING | {"anyio"})


def test_the_gora_command_loads_neither_side_until_a_command_runs():
    modules = _modules_after_import("import cli.main, service.core.migrate, service.core.tables")
    assert "cli.main" in modules
    assert not modules & (WEB | TRAINING)
    assert "worker" not in modules and "service.api" not in modules
