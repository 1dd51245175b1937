"""Preference tuning (DPO) in the recipe: TRL's DPO trainer under our Trainer hooks, and the probe's loss.

``PreferenceTrainer`` is ``RecipeTrainer`` over TRL's ``DPOTrainer``: TRL computes the DPO loss, the
reference log-probabilities and the reward metrics (margins, accuracies) a DPO user reads; our class
keeps what every job has (LoRA+ optimizer groups, the trained-token count, checkpoints, the bridge
to the worker's callbacks). Rows arrive encoded (``gora.data.preference``), so TRL's own tokenising
step is skipped.

The reference model is the policy the adapter starts from, never a second copy of the weights:
- a new adapter: the base with the adapter switched off. For LoRA (B = 0) that is exactly the
  starting policy. GoRA's start ``W + ΔW(0)`` is one descent step of the DPO loss (its probe measured
  that loss), so a GoRA run begins with a margin already in the right direction.
- an adapter a job starts from (SFT → DPO): a frozen copy of those adapter weights (TRL's ``"ref"``
  adapter), as DPO's recipe has it: the reference is the SFT model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from peft.utils import set_peft_model_state_dict
from trl import DPOTrainer
from trl.trainer.utils import selective_log_softmax

from gora.train.trainer import RecipeTrainer

REFERENCE_ADAPTER = "ref"  # TRL's name for the frozen copy of the starting adapter

# The keys of TRL's reward metrics in the Trainer's logs ("eval_" before them when evaluating).
REWARD_MARGIN = "rewards/margins"
REWARD_ACCURACY = "rewards/accuracies"


class PreferenceTrainer(RecipeTrainer, DPOTrainer):
    """DPO with our hooks: ``RecipeTrainer`` first in the order, ``DPOTrainer`` below it.

    ``reference_adapter``: the state dict of the adapter the policy starts from, or None for the
    base (a new adapter); see the module's docstring.
    """

    def __init__(self, *args: Any, reference_adapter: Mapping[str, torch.Tensor] | None, **kwargs):
        for key in ("train_dataset", "eval_dataset"):  # TRL accepts `datasets` datasets only
            kwargs[key] = as_hf_dataset(kwargs.get(key))
        super().__init__(*args, **kwargs)
        # DPO's loss is a mean per micro-batch: the Trainer must divide it over accumulation.
        self.model_accepts_loss_kwargs = False
        set_reference(self.model, reference_adapter)

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        return dataset  # already {prompt_ids, chosen_ids, rejected_ids} (gora.data.preference)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # TRL's loss and metrics (its own token accuracy among them). RecipeTrainer's accuracy tally
        # is skipped: a preference batch has no labels to score.
        return DPOTrainer.compute_loss(self, model, inputs, return_outputs, num_items_in_batch)


def as_hf_dataset(dataset: Any) -> Any:
    """Encoded rows as a ``datasets.Dataset`` (what TRL's trainer takes); None and one already so
    pass through."""
    from datasets import Dataset

    if dataset is None or isinstance(dataset, Dataset):
        return dataset
    return Dataset.from_list([dataset[i] for i in range(len(dataset))])


def set_reference(model: torch.nn.Module, reference: Mapping[str, torch.Tensor] | None) -> None:
    """Makes TRL's reference adapter (a copy of the starting one) the given weights, or removes it
    so that TRL's reference is the base with the adapter off."""
    if REFERENCE_ADAPTER not in getattr(model, "peft_config", {}):
        return
    if reference is None:
        model.delete_adapter(REFERENCE_ADAPTER)
        return
    # A resumed job's adapter is its checkpoint, not where it started: load the start explicitly.
    set_peft_model_state_dict(model, dict(reference), adapter_name=REFERENCE_ADAPTER)
    for name, parameter in model.named_parameters():
        if f".{REFERENCE_ADAPTER}." in name:
            parameter.requires_grad_(False)


def drop_reference(model: torch.nn.Module) -> None:
    """Removes the reference adapter after training: exports and checkpoints hold the policy only."""
    if REFERENCE_ADAPTER in getattr(model, "peft_config", {}):
        model.delete_adapter(REFERENCE_ADAPTER)


def completion_logps(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Each sequence's summed log-probability of its completion tokens (TRL's ``completion_mask``)."""
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False
    )
    per_token = selective_log_softmax(outputs.logits[:, :-1], batch["input_ids"][:, 1:])
    return (per_token * batch["completion_mask"][:, 1:]).sum(dim=-1)


def dpo_probe_loss(beta: float) -> Callable[[torch.nn.Module, Mapping], torch.Tensor]:
    """The DPO (sigmoid) loss of a batch where the model probed is its own reference.

    The log-ratios are zero in value but not in gradient: ``∂L/∂W = -β/2 · ∂(log π(chosen) -
    log π(rejected))/∂W`` averaged over the pairs, the gradient DPO's first step follows. So GoRA's
    ranks go where the preference signal is, and its init is a descent step of this loss.
    """

    def loss(model: torch.nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        chosen, rejected = completion_logps(model, batch).chunk(2)
        margin = (chosen - chosen.detach()) - (rejected - rejected.detach())
        return -F.logsigmoid(beta * margin).mean()

    return loss
