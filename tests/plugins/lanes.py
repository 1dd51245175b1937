"""The test lanes. ``make test`` runs every test; ``make test-fast`` runs the pure ones
(``-m "not slow and not services"``): no database server, broker or worker process, no pretrained
model, in about a minute.

``make test-deploy`` (``-m deploy``) runs the deployment test, which builds the images and runs the
compose stack; it is skipped otherwise. ``make test-vllm`` (``-m vllm``) reads our adapters with
vLLM's own loader, from a folder scripts/vllm-lane.sh fills; skipped otherwise too.

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
    # The same for the vLLM lane (make test-vllm: -m vllm), which needs vLLM's wheel beside us.
    markexpr = config.getoption("markexpr", "") or ""
    own_lanes = {
        "deploy": pytest.mark.skip(reason="the deployment lane: run it with make test-deploy"),
        "vllm": pytest.mark.skip(reason="the vLLM lane: run it with make test-vllm"),
    }
    for item in items:
        if _needs_services(item):
            item.add_marker(pytest.mark.services)
        for lane, skip in own_lanes.items():
            if item.get_closest_marker(lane) is not None and lane not in markexpr:
                item.add_marker(skip)
