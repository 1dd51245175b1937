"""The test lanes. ``make test`` runs every test; ``make test-fast`` runs the pure ones
(``-m "not slow and not services"``): no database server, broker or worker process, no pretrained
model, in about a minute.

``make test-deploy`` (``-m deploy``) runs the deployment test, which builds the images and runs the
compose stack; it is skipped otherwise.

``slow`` is declared by the tests that load a bundled model or run real jobs. ``services`` is given
here, to every test that runs against PostgreSQL (a ``postgresql`` parameter) or asks for a fixture
that talks to a server or starts a worker, so that no test can forget it.
"""

from __future__ import annotations

import pytest

SERVICE_FIXTURES = {"stack", "worker", "start_worker", "redis_client", "private_postgres"}


def _needs_services(item: pytest.Item) -> bool:
    if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    callspec = getattr(item, "callspec", None)
    return callspec is not None and "postgresql" in callspec.params.values()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The deployment test builds images and runs the compose stack: only when asked for
    # (make test-deploy: -m deploy), never as part of make test.
    wants_deploy = "deploy" in (config.getoption("markexpr", "") or "")
    skip = pytest.mark.skip(reason="the deployment lane: run it with make test-deploy")
    for item in items:
        if _needs_services(item):
            item.add_marker(pytest.mark.services)
        if item.get_closest_marker("deploy") is not None and not wants_deploy:
            item.add_marker(skip)
