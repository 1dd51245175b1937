"""Probe and importance against gradients computed independently with plain autograd."""

from __future__ import annotations

import pytest
import torch

from gora.importance import layer_importance
from gora.probe import probe_gradients
from gora.targets import resolve_targets
from tests.helpers.models import make_batches, make_tiny_llama


def autograd_mean_gradients(model, names, batches) -> dict[str, torch.Tensor]:
    """Every parameter trainable, ordinary backward per batch, gradients summed then averaged."""
    model.train()
    modules = dict(model.named_modules())
    sums = {n: torch.zeros_like(modules[n].weight) for n in names}
    for batch in batches:
        model.zero_grad()
        model(**batch).loss.backward()
        for n in names:
            sums[n] += modules[n].weight.grad
    model.zero_grad()
    return {n: s / len(batches) for n, s in sums.items()}


def test_probe_equals_independent_autograd_mean(tiny_llama, batches):
    names = list(resolve_targets(tiny_llama, "all-linear"))
    assert len(names) == 14  # 7 projections x 2 blocks; the LM head is not a target
    expected = autograd_mean_gradients(make_tiny_llama(), names, batches)
    result = probe_gradients(tiny_llama, names, batches, steps=len(batches))
    assert result.steps == 3 and result.samples == 6
    for name in names:
        got = result.gradients[name]
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, expected[name], rtol=1e-5, atol=1e-7)
        assert got.abs().sum() > 0


def test_probe_takes_only_probe_steps_batches(tiny_llama, batches):
    names = ["model.layers.0.self_attn.v_proj"]
    result = probe_gradients(tiny_llama, names, iter(batches), steps=2)
    expected = autograd_mean_gradients(make_tiny_llama(), names, batches[:2])
    assert result.steps == 2
    torch.testing.assert_close(result.gradients[names[0]], expected[names[0]], rtol=1e-5, atol=1e-7)


def test_probe_leaves_model_as_it_found_it(tiny_llama, batches):
    before = {k: v.clone() for k, v in tiny_llama.state_dict().items()}
    tiny_llama.eval()
    tiny_llama.model.embed_tokens.weight.requires_grad_(False)
    probe_gradients(tiny_llama, ["model.layers.1.mlp.up_proj"], batches, steps=3)
    assert not tiny_llama.training
    assert not tiny_llama.model.embed_tokens.weight.requires_grad
    assert tiny_llama.model.layers[0].self_attn.q_proj.weight.requires_grad
    assert all(p.grad is None for p in tiny_llama.parameters())
    for key, value in tiny_llama.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_probe_with_no_batches_is_a_clear_error(tiny_llama):
    with pytest.raises(ValueError, match="at least one batch"):
        probe_gradients(tiny_llama, ["model.layers.0.mlp.up_proj"], [], steps=4)


def test_importance_kinds_match_their_formulas():
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(6, 5, generator=generator)
    grad = torch.randn(6, 5, generator=generator)
    product = (weight * grad).numpy()
    import numpy as np

    assert layer_importance(weight, grad, "union_mean") == pytest.approx(np.abs(product).mean())
    assert layer_importance(weight, grad, "grad_norm") == pytest.approx(
        np.sqrt((grad.numpy() ** 2).sum())
    )
    assert layer_importance(weight, grad, "union_frobenius") == pytest.approx(
        np.sqrt((product**2).sum())
    )
    assert layer_importance(weight, grad, "union_nuclear") == pytest.approx(
        np.linalg.svd(product, compute_uv=False).sum(), rel=1e-5
    )
    with pytest.raises(ValueError, match="unknown importance"):
        layer_importance(weight, grad, "fisher")


def test_importance_is_fp32_for_a_bf16_weight():
    weight = torch.full((4, 4), 3.0, dtype=torch.bfloat16)
    grad = torch.full((4, 4), 1e-3, dtype=torch.float32)
    assert layer_importance(weight, grad) == pytest.approx(3e-3, rel=1e-6)


def test_targets_by_suffix_and_errors(tiny_llama):
    targets = resolve_targets(tiny_llama, ["q_proj", "v_proj"])
    assert list(targets) == [
        "model.layers.0.self_attn.q_proj",
        "model.layers.0.self_attn.v_proj",
        "model.layers.1.self_attn.q_proj",
        "model.layers.1.self_attn.v_proj",
    ]
    assert targets["model.layers.0.self_attn.v_proj"] == (16, 32)  # (d_out, d_in): 2 kv heads x 8
    with pytest.raises(ValueError, match=r"matched no linear layer.*q_proj"):
        resolve_targets(tiny_llama, ["query"])


def test_make_batches_is_deterministic():
    a, b = make_batches(), make_batches()
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))


def test_a_saved_probe_gives_the_same_adapter_as_probing_again(tmp_path):
    from gora import GoraConfig, get_gora_model
    from gora.adapters import target_layers
    from gora.probe import load_probe, save_probe

    cfg = GoraConfig(r_ref=4, probe_steps=3, gamma=0.1)
    probed = get_gora_model(make_tiny_llama(), cfg, make_batches())
    base = make_tiny_llama()
    probe = probe_gradients(base, target_layers(base, cfg), make_batches(), cfg.probe_steps)
    save_probe(probe, tmp_path / "probe.safetensors")
    loaded = load_probe(tmp_path / "probe.safetensors")
    assert (loaded.steps, loaded.samples, loaded.mean_loss) == (
        probe.steps, probe.samples, probe.mean_loss,
    )  # fmt: skip
    # Another gamma and r_ref from the same probe: no batches needed.
    for settings in (cfg, GoraConfig(r_ref=8, probe_steps=3, gamma=0.02)):
        reused = get_gora_model(make_tiny_llama(), settings, probe=loaded)
        fresh = get_gora_model(make_tiny_llama(), settings, make_batches())
        assert reused.gora_report.ranks == fresh.gora_report.ranks
        for (name, a), (_, b) in zip(
            reused.named_parameters(), fresh.named_parameters(), strict=True
        ):
            assert torch.equal(a, b), name
    assert (
        probed.gora_report.ranks
        == get_gora_model(make_tiny_llama(), cfg, probe=loaded).gora_report.ranks
    )
