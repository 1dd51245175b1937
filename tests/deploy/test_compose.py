"""docker/docker-compose.yml and the Dockerfiles, checked against the code (no Docker engine needed).

The settings come from the pydantic models the code reads, the commands from the ``gora`` typer app,
so renaming a setting or an option breaks this test, not a team's deployment.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from cli.main import app as gora_app
from service.core.settings import Settings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "docker-compose.yml"
# Read outside the settings models: the model cache (gora/model_registry.py), the client commands,
# and the compose files' own (host ports, images, threads, the storage volume's name, publishing).
OTHER_VARIABLES = {
    "GORA_CACHE_DIR",
    "GORA_API_URL",
    "GORA_API_KEY",
    "GORA_API_PORT",
    "GORA_FLOWER_PORT",
    "GORA_BASE_IMAGE",
    "GORA_IMAGE_TAG",
    "GORA_POSTGRES_IMAGE",
    "GORA_REDIS_IMAGE",
    "GORA_FLOWER_IMAGE",
    "GORA_CPU_WORKER_THREADS",
    "GORA_STORAGE_VOLUME",
    "GORA_EXPOSE_ADDRESS",
    "GORA_EXPOSE_POSTGRES_PORT",
    "GORA_EXPOSE_REDIS_PORT",
}
SUBST = re.compile(r"\$\{([A-Z0-9_]+)(?::?[-?]([^}]*))?\}")


def variables(model: type, prefix: str) -> set[str]:
    return {f"{prefix}{name}".upper() for name in model.model_fields}


SERVICE_VARS = variables(Settings, "GORA_")
WORKER_VARS = variables(WorkerSettings, "GORA_WORKER_")


def expand(value: Any) -> str:
    """A compose value with ``${VAR:-default}`` replaced by its default (what an empty .env gives)."""
    return SUBST.sub(lambda m: m.group(2) or "", str(value))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def gora() -> Any:
    return typer.main.get_command(gora_app)  # type: ignore[return-value]


def gora_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for name, spec in compose["services"].items()
        if spec.get("command") and spec["command"][0] == "gora"
    }


def parse(gora: Any, argv: list[str]) -> tuple[str, Any]:
    """Resolves ``gora <sub> [<sub>] args`` the way click would run it; raises on a bad command or option."""
    assert argv[0] == "gora", argv
    group: Any = gora
    words, args = [], argv[1:]
    while hasattr(group, "get_command"):  # a group (typer may bring its own click)
        name, args = args[0], args[1:]
        command = group.get_command(
            group.make_context("gora", [name, "--help"], resilient_parsing=True), name
        )
        assert command is not None, f"gora has no command {' '.join([*words, name])!r}"
        words.append(name)
        group = command
    return " ".join(words), group.make_context(" ".join(["gora", *words]), list(args))


def test_the_settings_list_is_not_empty():
    assert {
        "GORA_DATABASE_URL",
        "GORA_BROKER_URL",
        "GORA_STORAGE_URL",
        "GORA_POOLS",
    } <= SERVICE_VARS
    assert "GORA_WORKER_HEARTBEAT_S" in WORKER_VARS


def test_every_setting_a_service_reads_is_set(compose):
    services = gora_services(compose)
    assert {"migrate", "api"} <= set(services)
    for name, spec in services.items():
        env = spec["environment"]
        needed = SERVICE_VARS | (WORKER_VARS if spec["command"][1] == "worker" else set())
        missing = needed - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}"
        # The values, with an empty .env, are valid settings (e.g. the default pool is a pool).
        values = {
            key[len("GORA_") :].lower(): expand(v) for key, v in env.items() if key in SERVICE_VARS
        }
        settings = Settings(**values)
        assert settings.database_url.startswith("postgresql+psycopg://")
        assert settings.broker_url.startswith("redis://")
        assert settings.env == "production"
        worker_values = {
            key[len("GORA_WORKER_") :].lower(): expand(v)
            for key, v in env.items()
            if key in WORKER_VARS
        }
        WorkerSettings(**worker_values)


def test_every_gora_variable_is_known_and_in_env_example(compose):
    text = COMPOSE.read_text() + (DOCKER / "expose-db.yml").read_text()
    used = set(re.findall(r"\b(GORA_[A-Z0-9_]+)", text))
    known = SERVICE_VARS | WORKER_VARS | OTHER_VARIABLES
    assert used - known == set(), "the compose file names settings the code does not read"
    example = (ROOT / ".env.example").read_text()
    listed = set(re.findall(r"^#?\s*(GORA_[A-Z0-9_]+)=", example, re.MULTILINE))
    assert known - listed == set(), ".env.example lacks settings"
    assert listed - known == set(), ".env.example names settings the code does not read"
    assert "POSTGRES_PASSWORD" in example and "GORA_ADMIN_TOKEN:?" in text


def test_images_build_from_files_in_the_repo(compose):
    built = [spec for spec in compose["services"].values() if "build" in spec]
    assert built
    for spec in built:
        context = (DOCKER / spec["build"]["context"]).resolve()
        assert context == ROOT
        dockerfile = context / spec["build"]["dockerfile"]
        assert dockerfile.is_file(), dockerfile
        for source in re.findall(r"^COPY (.+) \S+$", dockerfile.read_text(), re.MULTILINE):
            for path in source.split():
                assert (context / path).exists(), f"{dockerfile.name} copies missing {path}"
    for spec in gora_services(compose).values():
        assert "build" in spec, "a gora service runs an image built from this repo"


def test_commands_are_real_gora_commands(compose, gora):
    services = gora_services(compose)
    seen = {parse(gora, spec["command"])[0] for spec in services.values()}
    assert seen == {"db upgrade", "serve", "worker"}
    assert services["api"]["command"][:2] == ["gora", "serve"]
    assert "0.0.0.0" in services["api"]["command"]


def test_a_wrong_command_or_option_is_caught(gora):
    with pytest.raises(AssertionError):
        parse(gora, ["gora", "serv"])
    with pytest.raises(Exception, match="No such option"):  # click's, possibly typer's own copy
        parse(gora, ["gora", "worker", "--poool", "gpu"])


def test_api_waits_for_the_migration_and_the_database(compose):
    api, migrate = compose["services"]["api"], compose["services"]["migrate"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert api["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["command"] == ["gora", "db", "upgrade"] and migrate.get("restart") == "no"
    assert "healthcheck" in compose["services"]["postgres"]
    assert any("/var/lib/postgresql/data" in v for v in compose["services"]["postgres"]["volumes"])


def test_workers_serve_the_configured_pools_one_gpu_each(compose, gora):
    workers = {n: s for n, s in gora_services(compose).items() if s["command"][1] == "worker"}
    gpu_workers = {n: s for n, s in workers.items() if "deploy" in s}
    assert len(gpu_workers) >= 1
    device_ids = []
    for name, spec in workers.items():
        _, context = parse(gora, spec["command"])
        pools = expand(spec["environment"]["GORA_POOLS"]).split(",")
        assert context.params["pool"] in pools, f"{name} serves a pool jobs cannot name"
        storage = [v for v in spec["volumes"] if v.startswith("storage:")]
        assert storage, f"{name} does not mount the shared storage"
    for name, spec in gpu_workers.items():
        devices = spec["deploy"]["resources"]["reservations"]["devices"]
        assert len(devices) == 1 and devices[0]["capabilities"] == ["gpu"]
        assert len(devices[0]["device_ids"]) == 1, f"{name}: one GPU per worker"
        device_ids += devices[0]["device_ids"]
        # The container sees its one device as 0.
        assert spec["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
        assert parse(gora, spec["command"])[1].params["gpus"] == "0"
    assert len(device_ids) == len(set(device_ids)), "two workers reserve the same GPU"
    api_volumes = compose["services"]["api"]["volumes"]
    assert any(v.startswith("storage:") for v in api_volumes)
    assert "storage" in compose["volumes"]


def test_flower_is_optional(compose):
    assert compose["services"]["flower"]["profiles"] == ["flower"]


def dockerfile_cmd(name: str) -> list[str]:
    text = (DOCKER / name).read_text()
    (cmd,) = re.findall(r"^CMD (\[.*\])$", text, re.MULTILINE)
    return json.loads(cmd)


@pytest.mark.parametrize("name", ["Dockerfile.api", "Dockerfile.worker"])
def test_dockerfile_commands_are_the_documented_ones(name, gora):
    command = dockerfile_cmd(name)
    parse(gora, command)
    readme = (ROOT / "README.md").read_text()
    assert " ".join(command) in readme, f"README.md does not document {' '.join(command)!r}"


def test_images_install_the_extras_they_need():
    api = (DOCKER / "Dockerfile.api").read_text()
    worker = (DOCKER / "Dockerfile.worker").read_text()
    for dockerfile in (api, worker):
        assert dockerfile.startswith("#")
        assert (
            "ARG BASE_IMAGE=python:3.11-slim" in dockerfile and "FROM ${BASE_IMAGE}" in dockerfile
        )
    assert "pip install '.[api]'" in api and "COPY worker" not in api and "[train]" not in api
    assert "pip install '.[train]'" in worker and "[api]" not in worker
    assert "service/api/" in (DOCKER / "Dockerfile.worker.dockerignore").read_text()
    makefile = (ROOT / "Makefile").read_text()
    bundled = re.search(r"^BUNDLED := (.+)$", makefile, re.MULTILINE).group(1).split()
    image_bundled = re.search(r'^ARG BUNDLED="(.+)"$', worker, re.MULTILINE).group(1).split()
    assert image_bundled == bundled and "--no-deps ${BUNDLED}" in worker


def _would_install(extra: str, tmp_path: Path) -> set[str]:
    """What ``pip install '.[extra]'`` installs on an empty environment (pip's own report)."""
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed",
         "--report", str(report), f".[{extra}]"],
        cwd=ROOT, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}


def test_the_api_extra_installs_no_torch(tmp_path: Path):
    api = _would_install("api", tmp_path)
    assert {"fastapi", "uvicorn", "sqlalchemy", "celery"} <= api
    assert not api & {"torch", "transformers", "peft", "accelerate"}
    train = _would_install("train", tmp_path)
    assert {"torch", "transformers", "peft"} <= train and "fastapi" not in train
