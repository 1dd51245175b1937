"""Which linear layers an adapter targets: PEFT's matching rules, resolved to exact module names."""

from __future__ import annotations

from torch import nn

from gora.allocation import Shape

# Classification heads that PEFT trains in full (modules_to_save) for sequence classification.
_HEAD_NAMES = ("classifier", "score")


class TargetModulesNotFound(ValueError):
    """``target_modules`` matched no linear layer of the model; the message lists what it has."""

    def __init__(self, target_modules, available: list[str]):
        super().__init__(
            f"target_modules {target_modules!r} matched no linear layer of this model; "
            f"its linear layers end in: {', '.join(available) or 'none'}"
        )
        self.target_modules = target_modules
        self.available = available


def _matches(name: str, targets: list[str]) -> bool:
    return any(name == t or name.endswith("." + t) for t in targets)


def _is_inside(name: str, roots: list[str]) -> bool:
    """True when one of the dotted parts of ``name`` is a root: the module or one of its parents."""
    return any(f".{r}." in f".{name}." for r in roots)


def resolve_targets(model: nn.Module, target_modules, modules_to_save=None) -> dict[str, Shape]:
    """``{module name: (d_out, d_in)}`` of the linear layers the adapter will wrap, in model order.

    ``"all-linear"`` means every ``nn.Linear`` except the output head (the language-model head or a
    classification head), as in PEFT. A list matches module names exactly or by dotted suffix.
    """
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    excluded_roots = list(modules_to_save or []) + list(_HEAD_NAMES)
    found: dict[str, Shape] = {}
    for name, module in model.named_modules():
        if (
            not isinstance(module, nn.Linear)
            or module is output
            or _is_inside(name, excluded_roots)
        ):
            continue
        if target_modules == "all-linear" or _matches(name, target_modules):
            found[name] = (module.out_features, module.in_features)
    if not found:
        raise TargetModulesNotFound(target_modules, linear_suffixes(model))
    return found


def linear_suffixes(model: nn.Module) -> list[str]:
    """The distinct last name parts of the model's linear layers (for error messages)."""
    return sorted(
        {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    )
