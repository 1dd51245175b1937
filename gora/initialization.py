"""Adapter initialisation from the probed gradient (gora-spec.md §3).

``A`` is drawn exactly as PEFT draws ``lora_A`` (Kaiming-uniform, ``a = sqrt(5)``), from a generator seeded by
the config seed and the layer's name, so every process draws the same ``A`` with no communication.
``B`` is the least-squares solution that makes the adapter's first output one gradient-descent step of size γ:

    B = −(γ · sqrt(d_in) / α) · G Aᵀ (A Aᵀ)⁻¹

With the rsLoRA scaling ``s = α / sqrt(r)`` this gives ``ΔW(0) = s B A = −γ sqrt(d_in / r) G P_A`` where
``P_A`` projects onto A's row space; for a random A, ``‖G P_A‖ ≈ sqrt(r / d_in) ‖G‖``, so ``‖ΔW(0)‖ ≈ γ ‖G‖``.
The minus sign matters: without it (reference code after commit 321fe07) the first step ascends the loss.
"""

from __future__ import annotations

import math
import zlib

import torch


def layer_generator(seed: int, layer_name: str) -> torch.Generator:
    """A CPU generator that depends only on (seed, layer name): order- and process-independent."""
    return torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(layer_name.encode()))


def kaiming_a(rank: int, d_in: int, generator: torch.Generator) -> torch.Tensor:
    """``A`` of shape (rank, d_in), fp32, distributed as PEFT's default ``lora_A``."""
    a = torch.empty(rank, d_in, dtype=torch.float32)
    torch.nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
    return a


def gradient_b(grad: torch.Tensor, a: torch.Tensor, gamma: float, alpha: float) -> torch.Tensor:
    """``B`` of shape (d_out, rank), fp32: the least-squares one-step fit, solved (never inverted)."""
    g = grad.to(a.device, torch.float32)
    d_in = g.shape[1]
    if gamma == 0:
        return torch.zeros(g.shape[0], a.shape[0], dtype=torch.float32, device=a.device)
    gram = a @ a.T  # (r, r), symmetric positive definite for a random A with r <= d_in
    # B = G Aᵀ gram⁻¹  <=>  gram Bᵀ = A Gᵀ   (gram is symmetric)
    b_transposed = torch.linalg.solve(gram, a @ g.T)
    return -(gamma * math.sqrt(d_in) / alpha) * b_transposed.T


def gora_init(
    grad: torch.Tensor, rank: int, *, gamma: float, alpha: float, seed: int, layer_name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) for one layer; both fp32 on the CPU."""
    d_in = grad.shape[1]
    a = kaiming_a(rank, d_in, layer_generator(seed, layer_name))
    return a, gradient_b(grad.cpu(), a, gamma, alpha)
