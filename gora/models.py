"""Loading a base model and its tokenizer: bundled aliases, local directories, GGUF files, hub ids.

GGUF files load through transformers' dequantizing reader, which takes ~20 s even for a 135M model
and flags the model as quantized (PEFT and ``save_pretrained`` then treat it differently). So each
GGUF is converted once into a plain float32 safetensors directory in the cache, read from then on.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from gora.model_registry import (
    TASKS,
    ModelLoadError,
    ModelSource,
    check_task,
    default_cache_dir,
    not_found_message,
    resolve_model_source,
)

__all__ = [
    "TASKS",
    "ModelLoadError",
    "converted_gguf_dir",
    "load_base_model",
    "prepare_tokenizer",
    "resolve_model_source",
]

HUB_TIMEOUT_S = 5.0  # one metadata request; transformers' own retries would take ~25 s to give up
_AUTO_CLASSES = {
    "causal_lm": AutoModelForCausalLM,
    "sequence_classification": AutoModelForSequenceClassification,
}


def load_base_model(
    name_or_path: str,
    task: str = "causal_lm",
    *,
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    dtype: torch.dtype | str | None = None,
    cache_dir: str | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The model (on the CPU, float32 unless ``dtype`` says otherwise) and its tokenizer.

    ``sequence_classification`` needs ``num_labels`` or ``label_names``; a classifier head missing
    from the checkpoint is initialised from ``seed``, so two loads give the same head. ``cache_dir``
    holds converted GGUF models (default ``$GORA_CACHE_DIR`` or ``~/.cache/gora``).
    """
    check_task(task)
    label_kwargs = _label_kwargs(task, num_labels, label_names)
    source = resolve_model_source(name_or_path)
    if source.alias and source.task == "sequence_classification" and task == "causal_lm":
        raise ModelLoadError(
            f"{source.alias!r} is an encoder without a language-model head: "
            "use task='sequence_classification' with it, or a causal LM such as 'smollm2-135m'"
        )
    kwargs = {"dtype": _torch_dtype(dtype), **label_kwargs}
    if source.kind == "gguf":
        path = str(converted_gguf_dir(source, cache_dir))
        model, tokenizer = _load_local(path, task, seed, kwargs)
    elif source.kind == "local":
        model, tokenizer = _load_local(source.path, task, seed, kwargs)
    else:
        model, tokenizer = _load_from_hub(source.path, task, seed, kwargs)
    prepare_tokenizer(tokenizer)
    if model.config.pad_token_id is None:
        # Sequence classification models find each row's last token by the pad id.
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def prepare_tokenizer(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Sets a pad token (eos when missing: padding never counts in the loss) and right padding."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelLoadError("the tokenizer has neither a pad nor an eos token to pad with")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def _label_kwargs(
    task: str, num_labels: int | None, label_names: list[str] | None
) -> dict[str, Any]:
    if task != "sequence_classification":
        if num_labels is not None or label_names is not None:
            raise ValueError("num_labels and label_names are for task='sequence_classification'")
        return {}
    names = [str(name) for name in label_names] if label_names is not None else None
    if names is not None:
        if len(set(names)) != len(names):
            raise ValueError(f"label_names must be distinct, got {names}")
        if num_labels is not None and num_labels != len(names):
            raise ValueError(f"num_labels={num_labels} but label_names has {len(names)} names")
        num_labels = len(names)
    if num_labels is None or num_labels < 2:
        raise ValueError(
            "task='sequence_classification' needs num_labels >= 2 or at least two label_names "
            f"(got num_labels={num_labels})"
        )
    names = names or [f"LABEL_{i}" for i in range(num_labels)]
    return {
        "num_labels": num_labels,
        "id2label": dict(enumerate(names)),
        "label2id": {name: i for i, name in enumerate(names)},
        # Integer class labels; without this transformers treats num_labels == 1 as regression.
        "problem_type": "single_label_classification",
    }


def _torch_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    resolved = getattr(torch, str(dtype), None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"dtype={dtype!r} is not a torch dtype (e.g. 'float32', 'bfloat16')")
    return resolved


def _from_pretrained(path: str, task: str, seed: int, kwargs: dict[str, Any]) -> PreTrainedModel:
    # A head missing from the checkpoint is drawn from the global RNG: seed it, then restore it.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _AUTO_CLASSES[task].from_pretrained(path, **kwargs)


def _load_local(
    path: str, task: str, seed: int, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    # transformers 5 does not pass local_files_only on to its PEFT-adapter lookup, which then retries
    # the hub for ~25 s when offline: say it twice.
    offline = {"local_files_only": True, "adapter_kwargs": {"local_files_only": True}}
    try:
        model = _from_pretrained(path, task, seed, {**kwargs, **offline})
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"could not load {path} for task={task!r}: {exc}") from exc
    return model, tokenizer


# --- Hugging Face Hub ----------------------------------------------------------------------------


def _hub_offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get(var, "") for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return constants.HF_HUB_OFFLINE or any(f.upper() in {"1", "ON", "YES", "TRUE"} for f in flags)


def _probe_hub(name: str) -> None:
    """One short metadata request, so that a missing hub fails in seconds with a clear message."""
    from huggingface_hub import model_info
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    try:
        model_info(name, timeout=HUB_TIMEOUT_S)
    except RepositoryNotFoundError as exc:
        reason = "the Hugging Face Hub has no such model (a private one needs HF_TOKEN)"
        raise ModelLoadError(not_found_message(name, reason)) from exc
    except HfHubHTTPError as exc:
        reason = f"the Hugging Face Hub answered: {exc}"
        raise ModelLoadError(not_found_message(name, reason)) from exc
    except Exception as exc:  # the HTTP client's connection errors differ between versions
        reason = f"the Hugging Face Hub could not be reached ({type(exc).__name__}: {exc})"
        raise ModelLoadError(not_found_message(name, reason)) from exc


def _load_from_hub(
    name: str, task: str, seed: int, kwargs: dict[str, Any]
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from huggingface_hub import try_to_load_from_cache

    # The local Hugging Face cache first: instant, and it works offline.
    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        try:
            return _load_local(name, task, seed, kwargs)
        except ModelLoadError:
            pass  # partly cached: fetch the rest
    if _hub_offline():
        reason = "HF_HUB_OFFLINE is set and the model is not in the local Hugging Face cache"
        raise ModelLoadError(not_found_message(name, reason))
    _probe_hub(name)
    try:
        model = _from_pretrained(name, task, seed, kwargs)
        tokenizer = AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError, KeyError) as exc:
        message = f"could not load {name!r} from the hub for task={task!r}: {exc}"
        raise ModelLoadError(message) from exc
    return model, tokenizer


# --- GGUF conversion -----------------------------------------------------------------------------


def _fingerprint(gguf: Path) -> str:
    """Changes when the file does: its path, size and modification time."""
    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def converted_gguf_dir(
    source: ModelSource | str, cache_dir: str | os.PathLike | None = None
) -> Path:
    """The plain safetensors directory of a GGUF model, converting it on the first call only."""
    if isinstance(source, str):
        source = resolve_model_source(source)
    if source.kind != "gguf" or source.gguf_file is None:
        raise ValueError(f"{source.name!r} is not a GGUF model")
    gguf = Path(source.path) / source.gguf_file
    slug = re.sub(r"[^\w.\-]+", "-", source.alias or gguf.stem)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / "models" / f"{slug}-{_fingerprint(gguf)}"
    if not (target / "config.json").is_file():
        _convert_gguf(gguf, target)
    return target


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantizes into a temporary directory, then renames it: readers never see half a cache."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp's 0700 would hide the cache from other users of a shared cache
    try:
        try:
            quantized = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"could not read the GGUF file {gguf}: {exc}") from exc
        _plain_copy(quantized).save_pretrained(staging)
        # Saves the chat template too (chat_template.jinja), which chat data needs.
        tokenizer.save_pretrained(staging)
        info = {"gguf": str(gguf.resolve()), "size": gguf.stat().st_size}
        (staging / "gora_source.json").write_text(json.dumps(info, indent=2) + "\n")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent conversion that won
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _plain_copy(quantized: PreTrainedModel) -> PreTrainedModel:
    """The same weights in a model built from a config without ``quantization_config``.

    Built on the meta device and given the loaded tensors (no copy, no random init), so conversion
    needs memory for one model only.
    """
    config = copy.deepcopy(quantized.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(quantized.state_dict(), assign=True, strict=True)
    plain.tie_weights()
    return plain
