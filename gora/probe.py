"""The probe: the mean gradient of every target weight over a few training batches (gora-spec.md §1).

The untouched pretrained model runs forward and backward in train mode with only the target ``.weight``
parameters requiring a gradient. A post-accumulate-grad hook adds each gradient into an fp32 accumulator
the moment it is ready and frees ``.grad``, so at most one layer's gradient exists at a time: peak memory is
the activations of one training step plus the accumulators (4 bytes per target weight), no more.
Every layer sees every batch (the reference code drops the last batch of the last layer; we do not).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from gora import distributed

# Leave this much accelerator memory free beyond the accumulators before choosing to keep them there.
_ACCUMULATOR_HEADROOM = 1.25


@dataclass
class ProbeResult:
    """Mean gradients (fp32), batches per rank, samples over all ranks, and the mean probe loss."""

    gradients: dict[str, torch.Tensor]
    steps: int
    samples: int
    mean_loss: float


def _accumulator_device(weights: Mapping[str, nn.Parameter]) -> torch.device:
    """The accelerator when the fp32 accumulators fit there with room to spare, else the CPU."""
    device = next(iter(weights.values())).device
    if device.type != "cuda":
        return torch.device("cpu")
    needed = sum(4 * w.numel() for w in weights.values())
    free, _ = torch.cuda.mem_get_info(device)
    return device if free > _ACCUMULATOR_HEADROOM * needed else torch.device("cpu")


def _new_accumulators(weights: Mapping[str, nn.Parameter]) -> dict[str, torch.Tensor]:
    device = _accumulator_device(weights)
    pin = device.type == "cpu" and torch.cuda.is_available()
    return {
        name: torch.zeros(w.shape, dtype=torch.float32, device=device, pin_memory=pin)
        for name, w in weights.items()
    }


@contextmanager
def _only_targets_require_grad(model: nn.Module, weights: Mapping[str, nn.Parameter]):
    """Freezes everything but the target weights for the duration; restores flags and mode after."""
    saved_flags = {p: p.requires_grad for p in model.parameters()}
    was_training = model.training
    try:
        for p in model.parameters():
            p.requires_grad_(False)
        for w in weights.values():
            w.requires_grad_(True)
        model.train()
        yield
    finally:
        for p, flag in saved_flags.items():
            p.requires_grad_(flag)
            p.grad = None
        model.train(was_training)


def _register_accumulating_hooks(weights, accumulators):
    def make_hook(name: str):
        def hook(param: torch.Tensor) -> None:
            accumulators[name].add_(param.grad.to(accumulators[name].device, torch.float32))
            param.grad = None  # freed at once: never one gradient per weight held together

        return hook

    return [w.register_post_accumulate_grad_hook(make_hook(n)) for n, w in weights.items()]


def _to_device(batch: Mapping, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _batch_size(batch: Mapping) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return int(value.shape[0])
    return 1


def save_probe(probe: ProbeResult, path: str | Path) -> None:
    """The probe as one safetensors file (gradients, fp32 on the CPU; counts in its metadata), so
    that later runs over the same model, data and probe settings need not probe again."""
    tensors = {
        name: g.detach().to("cpu", torch.float32).contiguous()
        for name, g in probe.gradients.items()
    }
    metadata = {
        "steps": str(probe.steps),
        "samples": str(probe.samples),
        "mean_loss": repr(probe.mean_loss),
    }
    save_file(tensors, str(path), metadata=metadata)


def load_probe(path: str | Path) -> ProbeResult:
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata() or {}
        gradients = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return ProbeResult(
        gradients=gradients,
        steps=int(metadata["steps"]),
        samples=int(metadata["samples"]),
        mean_loss=float(metadata["mean_loss"]),
    )


LossFn = Callable[[nn.Module, Mapping], torch.Tensor]


def model_loss(model: nn.Module, batch: Mapping) -> torch.Tensor:
    """The loss the model computes itself from the batch's labels (supervised training's)."""
    return model(**batch).loss


def probe_gradients(
    model: nn.Module,
    target_names: Iterable[str],
    batches: Iterable[Mapping],
    steps: int,
    loss_fn: LossFn = model_loss,
) -> ProbeResult:
    """Mean ``∂L/∂W`` of each named module's weight over ``steps`` batches (fewer if the data ends).

    ``loss_fn(model, batch)`` is the training objective's loss (default: the model's own, from the
    batch's labels; preference tuning passes DPO's, ``gora.train.preference.dpo_probe_loss``).

    Under torch.distributed each rank probes its own batches and the means are averaged across ranks,
    which equals the mean over the global batch when every rank sees equally sized batches.
    """
    modules = dict(model.named_modules())
    weights = {name: modules[name].weight for name in target_names}
    accumulators = _new_accumulators(weights)
    device = next(iter(weights.values())).device
    done, samples, loss_sum = 0, 0, 0.0
    with _only_targets_require_grad(model, weights):
        handles = _register_accumulating_hooks(weights, accumulators)
        try:
            for batch in itertools.islice(batches, steps):
                loss = loss_fn(model, _to_device(batch, device))
                loss.backward()
                loss_sum += float(loss.detach())
                done += 1
                samples += _batch_size(batch)
        finally:
            for handle in handles:
                handle.remove()
    if done == 0:
        raise ValueError("probing needs at least one batch; the training data yielded none")
    for accumulator in accumulators.values():
        accumulator /= done
        distributed.average_(accumulator)
    mean_loss = torch.tensor([loss_sum / done])
    distributed.average_(mean_loss)
    return ProbeResult(
        gradients=accumulators,
        steps=done,
        samples=distributed.sum_int(samples),
        mean_loss=float(mean_loss.item()),
    )
