"""The service starts without torch: importing it (or the gora command) must not load torch."""

from __future__ import annotations

import subprocess
import sys


def _modules_after_import(statement: str) -> set[str]:
    # A fresh interpreter: this test process may already hold torch from other tests.
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_importing_the_app_does_not_import_torch():
    modules = _modules_after_import("import service.api.app; service.api.app.create_app")
    assert "service.api.app" in modules
    assert "torch" not in modules
    assert "transformers" not in modules


def test_the_cli_and_migrations_do_not_import_torch():
    modules = _modules_after_import("import cli.main, service.core.migrate, service.core.tables")
    assert "cli.main" in modules
    assert "torch" not in modules
