"""Layer importance from a weight and its probed mean gradient (gora-spec.md §2).

Each kind is one small function of ``(W, G)``; all work in fp32 whatever the model's dtype.
The paper's choice, ``union_mean``, is ``mean(|W ⊙ G|)``: a first-order estimate of how much the loss
would move if the weight were removed, averaged so that layer size does not dominate.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def union_mean(weight: Tensor, grad: Tensor) -> Tensor:
    return (weight.float() * grad.float()).abs().mean()


def grad_norm(weight: Tensor, grad: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(grad.float(), ord="fro")


def union_frobenius(weight: Tensor, grad: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(weight.float() * grad.float(), ord="fro")


def union_nuclear(weight: Tensor, grad: Tensor) -> Tensor:
    return torch.linalg.matrix_norm(weight.float() * grad.float(), ord="nuc")


IMPORTANCE_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "union_mean": union_mean,
    "grad_norm": grad_norm,
    "union_frobenius": union_frobenius,
    "union_nuclear": union_nuclear,
}


def layer_importance(weight: Tensor, grad: Tensor, kind: str = "union_mean") -> float:
    """The importance of one layer as a Python float (computed on the gradient's device)."""
    if weight.shape != grad.shape:
        raise ValueError(f"weight {tuple(weight.shape)} and gradient {tuple(grad.shape)} differ")
    try:
        function = IMPORTANCE_FUNCTIONS[kind]
    except KeyError:
        raise ValueError(
            f"unknown importance {kind!r}; valid: {', '.join(IMPORTANCE_FUNCTIONS)}"
        ) from None
    with torch.no_grad():
        return float(function(weight.detach().to(grad.device), grad))
