"""Which models a job may name: bundled aliases, directories under GORA_MODELS_DIR, or hub ids when
GORA_ALLOW_HUB_MODELS is set. Never a path of the client's choosing: the worker opens what this returns.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from gora.model_registry import BUNDLED, CAUSAL_LM, SEQUENCE_CLASSIFICATION, task_of_architecture
from service.core.errors import InvalidRequest
from service.core.settings import Settings

# One or two plain name components: "my-model" or "org/my-model"; no "..", no absolute paths.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,99})?$")

# The task each training-file format trains for.
TASK_OF_FORMAT = {
    "chat": CAUSAL_LM,
    "prompt_completion": CAUSAL_LM,
    "text": CAUSAL_LM,
    "classification": SEQUENCE_CLASSIFICATION,
    "preference": CAUSAL_LM,  # preference tuning (method "dpo") of a causal LM
}


def _task_of_directory(path: Path) -> str | None:
    """The task a Hugging Face directory's config names, if it names one."""
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    tasks = [task_of_architecture(str(a)) for a in config.get("architectures") or []]
    return next((task for task in tasks if task), None)


def _in_models_dir(settings: Settings, name: str) -> dict[str, Any] | None:
    assert settings.models_dir is not None
    root = settings.models_dir.resolve()
    path = (root / name).resolve()
    if root not in path.parents or not path.exists():
        return None
    is_model = (
        (path / "config.json").is_file() or path.suffix == ".gguf" or any(path.glob("*.gguf"))
    )
    if not is_model:
        return None
    # The worker joins ``name`` with its own GORA_MODELS_DIR: hosts may mount it in different places.
    return {"kind": "models_dir", "name": name, "task": _task_of_directory(path)}


def resolve_model(settings: Settings, name: str) -> dict[str, Any]:
    """``{kind, name, task}`` for a model the service accepts; 400 naming ``model`` otherwise."""
    if name in BUNDLED:
        return {"kind": "bundled", "name": name, "task": BUNDLED[name].task}
    if _NAME.match(name) and ".." not in name:
        found = _in_models_dir(settings, name)
        if found is not None:
            return found
        if settings.allow_hub_models:
            return {"kind": "hub", "name": name, "task": None}
    choices = ", ".join(sorted(BUNDLED))
    hub = "" if settings.allow_hub_models else " (Hugging Face Hub ids are disabled here)"
    raise InvalidRequest(
        f"unknown model {name!r}: use a bundled model ({choices}) or a directory under the "
        f"server's models directory{hub}",
        param="model",
        code="model_not_found",
    )


def available_models(settings: Settings) -> list[dict[str, Any]]:
    """Bundled aliases and the model directories under GORA_MODELS_DIR."""
    models = [
        {"id": alias, "kind": "bundled", "task": model.task, "description": model.description}
        for alias, model in sorted(BUNDLED.items())
    ]
    root = settings.models_dir
    if root is not None and root.is_dir():
        for path in sorted(root.iterdir()):
            found = _in_models_dir(settings, path.name) if _NAME.match(path.name) else None
            if found is not None:
                models.append({"id": path.name, "kind": "models_dir", "task": found["task"]})
    return models
