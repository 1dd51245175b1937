"""GoRA's initialisation: a descent step, the norm of ΔW(0), γ = 0, untouched base weights, fp32."""

from __future__ import annotations

import math

import pytest
import torch

from gora import GoraConfig, get_gora_model
from gora.export import lora_layers
from gora.initialization import gradient_b, kaiming_a, layer_generator
from gora.probe import probe_gradients
from tests.helpers.models import make_batches, make_tiny_llama


def mean_loss(model, batches) -> float:
    with torch.no_grad():
        return sum(float(model(**b).loss) for b in batches) / len(batches)


def delta_w(layer) -> torch.Tensor:
    """The adapter's weight update s·B·A, computed from the layer's own tensors."""
    a = layer.lora_A["default"].weight
    b = layer.lora_B["default"].weight
    return layer.scaling["default"] * (b @ a)


@pytest.mark.parametrize("gamma", [1e-3, 5e-2])
def test_first_step_descends_the_probe_loss(gamma):
    batches = make_batches()
    loss_before = mean_loss(make_tiny_llama().train(), batches)
    model = get_gora_model(
        make_tiny_llama(), GoraConfig(r_ref=4, probe_steps=3, gamma=gamma), batches
    )
    model.train()
    assert mean_loss(model, batches) < loss_before
    assert model.gora_report.probe["mean_loss"] == pytest.approx(loss_before, rel=1e-5)


def test_flipping_the_sign_ascends(tiny_llama, batches):
    """The property the sign guards: the reference code's missing minus makes the loss rise."""
    loss_before = mean_loss(make_tiny_llama().train(), batches)
    model = get_gora_model(tiny_llama, GoraConfig(r_ref=4, probe_steps=3, gamma=5e-2), batches)
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B["default"].weight.neg_()
    assert mean_loss(model.train(), batches) > loss_before


def test_delta_w_is_a_projected_gradient_step(batches):
    """ΔW(0) = −γ sqrt(d_in / r) G P_A, with P_A computed independently by a pseudo-inverse."""
    gamma = 5e-2
    names_to_grads = probe_gradients(
        make_tiny_llama(), ["model.layers.0.self_attn.v_proj"], batches, steps=3
    ).gradients
    model = get_gora_model(
        make_tiny_llama(), GoraConfig(r_ref=4, probe_steps=3, gamma=gamma), batches
    )
    layer = lora_layers(model)["model.layers.0.self_attn.v_proj"]
    a = layer.lora_A["default"].weight.double()
    rank, d_in = a.shape
    projector = torch.linalg.pinv(a) @ a
    g = names_to_grads["model.layers.0.self_attn.v_proj"].double()
    expected = -gamma * math.sqrt(d_in / rank) * g @ projector
    torch.testing.assert_close(delta_w(layer).double(), expected, rtol=1e-4, atol=1e-9)
    assert layer.scaling["default"] == pytest.approx(16.0 / math.sqrt(rank))


@pytest.mark.parametrize("seed", range(5))
def test_delta_w_norm_is_gamma_times_gradient_norm(seed):
    """‖ΔW(0)‖ ≈ γ‖G‖ for a random A: within 10 % at d_in = 1024, r = 32 on a full-rank G."""
    generator = torch.Generator().manual_seed(seed)
    d_out, d_in, rank, gamma, alpha = 256, 1024, 32, 5e-2, 16.0
    g = torch.randn(d_out, d_in, generator=generator)
    a = kaiming_a(rank, d_in, layer_generator(seed, "layer"))
    b = gradient_b(g, a, gamma, alpha)
    delta = (alpha / math.sqrt(rank)) * b @ a
    assert torch.linalg.norm(delta) / (gamma * torch.linalg.norm(g)) == pytest.approx(1.0, abs=0.1)


def test_gamma_zero_gives_zero_b_and_the_base_outputs(batches):
    model = get_gora_model(
        make_tiny_llama(), GoraConfig(r_ref=4, probe_steps=3, gamma=0.0), batches
    )
    for layer in lora_layers(model).values():
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    ids = batches[0]["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids).logits, make_tiny_llama()(input_ids=ids).logits
        )


def test_base_weights_untouched_and_adapters_fp32(batches):
    reference = make_tiny_llama().to(torch.bfloat16).state_dict()
    base = make_tiny_llama().to(torch.bfloat16)
    model = get_gora_model(base, GoraConfig(r_ref=4, probe_steps=3), batches)
    for name, value in model.base_model.model.state_dict().items():
        clean = name.replace(".base_layer", "")
        if "lora_" in name:
            assert value.dtype == torch.float32, name
        else:
            assert torch.equal(value, reference[clean]), name
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)


def test_a_is_distributed_as_peft_draws_it():
    a = kaiming_a(64, 400, layer_generator(0, "x"))
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) on fan_in 400
    assert a.abs().max() <= bound
    assert a.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert torch.equal(a, kaiming_a(64, 400, layer_generator(0, "x")))
    assert not torch.equal(a, kaiming_a(64, 400, layer_generator(0, "y")))


def test_lora_type_uses_r_ref_everywhere_and_zero_b(tiny_llama):
    model = get_gora_model(tiny_llama, GoraConfig(type="lora", r_ref=4, target_modules=["q_proj"]))
    layers = lora_layers(model)
    assert len(layers) == 2
    for layer in layers.values():
        assert layer.r["default"] == 4
        assert layer.scaling["default"] == pytest.approx(16.0 / 4)  # plain LoRA: α / r
        assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    assert model.gora_report.to_dict()["totals"]["allocated"] == 2 * 4 * (32 + 32)


def test_gora_without_batches_is_a_clear_error(tiny_llama):
    with pytest.raises(ValueError, match="needs training batches"):
        get_gora_model(tiny_llama, GoraConfig())
