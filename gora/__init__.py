"""GoRA: gradient-driven adaptive low-rank adaptation (arXiv 2502.12171) as a library.

``probe -> allocate -> init -> train -> export``, on top of transformers and PEFT. The public names are
imported lazily so that torch-free parts (``gora.data.formats``, ``gora.config``) stay cheap to import:
the service validates uploads with them without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_PUBLIC = {
    "GoraConfig": "gora.config",
    "allocate_ranks": "gora.allocation",
    "get_gora_model": "gora.adapters",
    "save_adapter": "gora.export",
    "load_base_model": "gora.models",
}

__all__ = ["GoraConfig", "allocate_ranks", "get_gora_model", "load_base_model", "save_adapter"]

if TYPE_CHECKING:  # pragma: no cover
    from gora.adapters import get_gora_model
    from gora.allocation import allocate_ranks
    from gora.config import GoraConfig
    from gora.export import save_adapter
    from gora.models import load_base_model


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'gora' has no attribute {name!r}")
