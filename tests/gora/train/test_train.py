"""The training recipe on tiny seeded models built from configs (no downloads), checked against
independent computations: closed-form schedule, autograd gradients, token counts, an uninterrupted run."""

from __future__ import annotations

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM, LlamaForSequenceClassification

from gora.train import (
    CheckpointSaved,
    EvalResult,
    Metrics,
    Progress,
    TrainingCallbacks,
    TrainingConfig,
    TrainingDiverged,
    TrainingRecipe,
    TrainingWarning,
    build_param_groups,
    default_batch_size,
    default_learning_rate,
    default_n_epochs,
    latest_checkpoint,
    load_trainable_adapter,
    parameter_role,
    resolve_bf16,
    train,
)
from gora.train.accuracy import hits_and_counts
from gora.train.defaults import split_batch
from gora.train.events import DivergenceGuard
from tests.helpers.models import tiny_llama_config

VOCAB = 100
N_LABELS = 3
TARGETS = ["q_proj", "v_proj", "o_proj", "down_proj"]


# -- tiny models and data ---------------------------------------------------------------------------
def tiny_config() -> LlamaConfig:
    # A wide init range: with the default 0.02 the logits of a random tiny model are too small for
    # any adapter to move the loss far from ln(VOCAB).
    return tiny_llama_config(
        intermediate_size=64,
        num_key_value_heads=4,
        vocab_size=VOCAB,
        initializer_range=0.3,
        pad_token_id=0,
    )


def _random_b(model: torch.nn.Module, seed: int) -> None:
    # PEFT starts B at zero, which makes every gradient of A zero at step 1; a random B makes the
    # gradient checks cover A too.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)


def causal_lora(seed: int = 0, random_b: bool = False):
    torch.manual_seed(seed)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="CAUSAL_LM")
    model = get_peft_model(LlamaForCausalLM(tiny_config()), lora)
    if random_b:
        _random_b(model, seed + 1)
    return model


def classifier_lora(seed: int = 0, random_b: bool = False):
    torch.manual_seed(seed)
    llama = tiny_config()
    llama.num_labels = N_LABELS
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, task_type="SEQ_CLS")
    # SEQ_CLS puts the `score` head in modules_to_save: trainable, outside LoRA.
    model = get_peft_model(LlamaForSequenceClassification(llama), lora)
    if random_b:
        _random_b(model, seed + 1)
    return model


def lm_rows(n: int, seed: int = 1, low: int = 6, high: int = 13) -> list[dict[str, torch.Tensor]]:
    """Rows of varying length over a 10-token alphabet (learnable: the unigram distribution)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        length = int(torch.randint(low, high, (1,), generator=generator))
        ids = torch.randint(1, 11, (length,), generator=generator)
        rows.append({"input_ids": ids, "labels": ids.clone()})
    return rows


def class_rows(n: int, seed: int = 2, length: int = 8) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        ids = torch.randint(1, VOCAB, (length,), generator=generator)
        rows.append({"input_ids": ids, "labels": torch.tensor(int(ids[0]) % N_LABELS)})
    return rows


def collate(rows: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Right padding with id 0; padded label positions are -100."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    token_labels = rows[0]["labels"].dim() == 1
    labels = (
        torch.full((len(rows), width), -100)
        if token_labels
        else torch.zeros(len(rows), dtype=torch.long)
    )
    for i, row in enumerate(rows):
        k = len(row["input_ids"])
        ids[i, :k], mask[i, :k] = row["input_ids"], 1
        if token_labels:
            labels[i, :k] = row["labels"]
        else:
            labels[i] = row["labels"]
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


class Recorder(TrainingCallbacks):
    def __init__(self, stop_at: int | None = None):
        self.events: list[object] = []
        self.stop_at = stop_at
        self.step = 0

    def on_progress(self, progress: Progress) -> None:
        self.events.append(progress)
        self.step = progress.step

    def on_metrics(self, metrics: Metrics) -> None:
        self.events.append(metrics)

    def on_checkpoint(self, checkpoint: CheckpointSaved) -> None:
        self.events.append(checkpoint)

    def on_eval(self, result: EvalResult) -> None:
        self.events.append(result)

    def on_warning(self, warning: TrainingWarning) -> None:
        self.events.append(warning)

    def should_stop(self) -> bool:
        return self.stop_at is not None and self.step >= self.stop_at

    def of(self, kind: type) -> list:
        return [e for e in self.events if isinstance(e, kind)]


def config(**overrides) -> TrainingConfig:
    # bf16 off: the exactness checks hold in fp32 on any machine (the GPU test turns it on).
    values = {"learning_rate": 1e-2, "n_epochs": 1, "batch_size": 4, "log_every": 5, "bf16": False}
    return TrainingConfig(**{**values, **overrides})


# -- config and defaults ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("learning_rate", -1.0, "> 0"),
        ("warmup_ratio", 1.0, "< 1"),
        ("min_lr_ratio", 1.5, "in [0, 1]"),
        ("batch_size", 0, ">= 1"),
        ("bf16", "yes", "'auto', True or False"),
        ("keep_checkpoints", 0, ">= 1 or None"),
        ("divergence_stop_ratio", 1.5, ">= divergence_warn_ratio"),
        ("checkpoint_every", 10, None),  # needs an output_dir
    ],
)
def test_config_errors_name_the_field_and_the_valid_range(field, value, expected):
    with pytest.raises(ValueError) as error:
        TrainingConfig(**{field: value})
    message = str(error.value)
    assert message.startswith("TrainingConfig.")
    assert field in message or "output_dir" in message
    if expected:
        assert expected in message
    with pytest.raises(ValueError, match="no field 'lr'"):
        TrainingConfig.from_dict({"lr": 1e-4})


def test_auto_resolves_to_the_documented_defaults():
    assert default_learning_rate("lora", "sequence_classification") == 2e-4  # measured on R8
    assert default_learning_rate("gora", "sequence_classification") == 2e-4
    assert default_learning_rate("gora", "causal_lm") == 1e-4  # measured on arithmetic
    assert default_learning_rate("lora", "causal_lm") == 5e-4
    assert default_learning_rate("lora", "causal_lm", n_params=8_000_000_000) == 5e-5
    # 0.2 % of the examples, to the nearest power of two (in log scale), within [8, 64]
    assert default_batch_size("sequence_classification", 5500) == (8, 1)  # 11 -> 8
    assert default_batch_size("sequence_classification", 8000) == (16, 1)  # 16
    assert default_batch_size("causal_lm", 100_000) == (8, 8)  # 200 -> capped at 64 = 8 x 8
    assert default_batch_size("causal_lm", 100_000, grad_accum_steps=4) == (16, 4)
    assert default_batch_size("causal_lm", 3) == (3, 1)  # never more than the examples
    assert split_batch("causal_lm", 32) == (8, 4)  # micro-batches of at most 8 for causal LMs
    assert split_batch("causal_lm", 12) == (6, 2)  # exactly the batch asked for
    assert split_batch("sequence_classification", 32) == (32, 1)
    assert split_batch("causal_lm", 7) == (7, 1)
    assert [default_n_epochs(n) for n in (50, 400, 1000, 50_000)] == [10, 3, 1, 1]

    resolved = TrainingConfig().resolve(
        adapter_type="gora", task="sequence_classification", n_examples=5500, lr_multiplier=0.5
    )
    assert (resolved.learning_rate, resolved.batch_size, resolved.n_epochs) == (1e-4, 8, 1)
    assert resolved.lr_ratio_b == 16.0 and resolved.head_lr_ratio == 16.0
    with pytest.raises(ValueError, match="resolve"):
        train(causal_lora(), lm_rows(4), collate, TrainingConfig())


def test_bf16_auto_is_off_without_a_bf16_gpu():
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        pytest.skip("this machine supports bf16")
    assert resolve_bf16("auto") is False
    with pytest.raises(ValueError, match="bf16"):
        resolve_bf16(True)


# -- optimizer and schedule -------------------------------------------------------------------------
def test_param_groups_have_lora_plus_and_head_rates():
    model = classifier_lora()
    cfg = config(learning_rate=1e-3, lr_ratio_b=16.0, head_lr_ratio=8.0)
    groups = {g["name"]: g for g in build_param_groups(model, cfg)}
    assert {name: g["lr"] for name, g in groups.items()} == pytest.approx(
        {"lora_A": 1e-3, "lora_B": 16e-3, "head": 8e-3}
    )
    trainable = {id(p): n for n, p in model.named_parameters() if p.requires_grad}
    grouped = [id(p) for g in groups.values() for p in g["params"]]
    assert sorted(grouped) == sorted(trainable)  # every trainable parameter, exactly once
    for name, group in groups.items():
        roles = {parameter_role(trainable[id(p)]) for p in group["params"]}
        assert roles == {name}
    head_names = [trainable[id(p)] for p in groups["head"]["params"]]
    assert head_names and all("score" in n for n in head_names)

    # The optimizer the Trainer actually steps has the same rates before its schedule scales them.
    recipe = TrainingRecipe(model, class_rows(8), collate, dataclasses_replace(cfg, max_steps=1))
    recipe.setup()
    try:
        recipe.train()
        used = {g["name"]: g["initial_lr"] for g in recipe.optimizer.param_groups}
    finally:
        recipe.cleanup()
    assert used == pytest.approx({"lora_A": 1e-3, "lora_B": 16e-3, "head": 8e-3})


def test_a_caller_role_function_trains_a_plain_model_at_base_and_head_rates():
    """The hook the quality benchmark's full fine-tuning uses: no LoRA, two rates, every weight."""
    torch.manual_seed(0)
    llama = tiny_config()
    llama.num_labels = N_LABELS
    model = LlamaForSequenceClassification(llama)
    with pytest.raises(ValueError, match="no trainable LoRA parameters"):
        build_param_groups(model, config())  # the default roles refuse a model without LoRA

    def role(name: str) -> str:
        return "head" if name.startswith("score.") else "base"

    cfg = config(learning_rate=1e-3, head_lr_ratio=8.0, max_steps=1, warmup_ratio=0.0)
    groups = {g["name"]: g["lr"] for g in build_param_groups(model, cfg, role)}
    assert groups == pytest.approx({"base": 1e-3, "head": 8e-3})

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    recipe = TrainingRecipe(model, class_rows(8), collate, cfg)
    recipe.setup()
    recipe.trainer.parameter_role = role
    try:
        recipe.train()
        used = {g["name"]: g["initial_lr"] for g in recipe.optimizer.param_groups}
    finally:
        recipe.cleanup()
    assert used == pytest.approx({"base": 1e-3, "head": 8e-3})
    changed = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    assert "score.weight" in changed and "model.layers.0.self_attn.q_proj.weight" in changed


def dataclasses_replace(cfg: TrainingConfig, **changes) -> TrainingConfig:
    return TrainingConfig.from_dict({**cfg.to_dict(), **changes})


def test_schedule_is_warmup_then_cosine_to_min_ratio():
    total, warmup_ratio, min_ratio, peak = 20, 0.1, 0.1, 1e-2
    recorder = Recorder()
    cfg = config(
        learning_rate=peak, n_epochs=5, batch_size=4, warmup_ratio=warmup_ratio, log_every=1
    )
    result = train(causal_lora(), lm_rows(16), collate, cfg, recorder)
    assert result.steps == total

    warmup = math.ceil(total * warmup_ratio)

    def closed_form(update: int) -> float:  # the rate of the update that takes step `update` to +1
        if update < warmup:
            return peak * update / warmup
        progress = (update - warmup) / (total - warmup)
        return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

    rates = {m.step: m.learning_rate for m in recorder.of(Metrics)}
    for step in (1, 2, 3, 8, 15, 20):
        assert rates[step] == pytest.approx(closed_form(step - 1), rel=1e-6, abs=1e-12)
    assert rates[2] == pytest.approx(peak / 2)  # mid warm-up
    assert rates[3] == pytest.approx(peak)  # the peak right after warm-up
    assert min(rates.values()) == 0.0 and rates[20] > min_ratio * peak  # approaches 0.1x from above


# -- training behaviour -----------------------------------------------------------------------------
def test_loss_goes_down_and_tokens_are_counted():
    rows = lm_rows(32)
    result = train(causal_lora(), rows, collate, config(n_epochs=4, batch_size=8))
    assert result.steps == result.total_steps == 16
    assert not result.cancelled and len(result.losses) == 16
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first - 1.0, result.losses  # ln(100) ~ 4.6 down towards ln(10) ~ 2.3
    assert result.final_loss == pytest.approx(sum(result.losses[-5:]) / 5)
    # Trained tokens: every position after the first of every row, once per epoch.
    assert result.trained_tokens == 4 * sum(len(r["input_ids"]) - 1 for r in rows)


def test_cancel_stops_within_one_step():
    recorder = Recorder(stop_at=3)
    result = train(causal_lora(), lm_rows(40), collate, config(n_epochs=1), recorder)
    assert result.cancelled and result.steps == 3 and result.total_steps == 10
    assert [p.step for p in recorder.of(Progress)] == [1, 2, 3]
    assert recorder.of(Metrics)[-1].step == 3  # the last partial window is still reported


def test_divergence_warns_first_then_stops_with_a_clear_error():
    recorder = Recorder()
    cfg = config(learning_rate=10.0, n_epochs=5, warmup_ratio=0.0, log_every=1)
    # A classification head runs away for sure (confidently wrong logits are unbounded); the tiny
    # causal LM's normalised layers saturate at a uniform prediction instead, which is no explosion.
    with pytest.raises(TrainingDiverged, match="Lower the learning rate") as error:
        train(classifier_lora(), class_rows(16), collate, cfg, recorder)
    assert isinstance(error.value, RuntimeError)
    warnings = recorder.of(TrainingWarning)
    assert len(warnings) == 1 and "learning rate" in warnings[0].message
    assert warnings[0].step <= error.value.step  # heard before (or at) the stop, never after


def test_divergence_guard_warns_once_then_stops_on_a_runaway_loss():
    guard = DivergenceGuard(warn_ratio=2.0, stop_ratio=4.0, window=3)
    verdicts = [guard.observe(x) for x in [2.0, 2.2, 1.9, 2.0, 3.0, 6.0, 8.0, 9.0, 30.0]]
    warned = [i for i, v in enumerate(verdicts) if v.warn]
    stopped = [i for i, v in enumerate(verdicts) if v.stop]
    assert len(warned) == 1 and stopped and warned[0] < stopped[0]
    assert guard.reference == 2.0  # the median of the first three losses
    quiet = DivergenceGuard(2.0, 4.0, 3)
    assert not any(quiet.observe(x).warn for x in [2.0, 1.5, 1.2, 1.0, 1.1, 0.9])
    nan = DivergenceGuard(2.0, 4.0, 3).observe(float("nan"))
    assert nan.warn and nan.stop == "non-finite loss"  # a warning even when both come at once


def test_only_lora_and_head_parameters_change():
    model = classifier_lora()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    rows = class_rows(16)
    result = train(model, rows, collate, config(learning_rate=1e-3), eval_dataset=class_rows(4, 7))
    after = {n: p.detach().cpu() for n, p in model.named_parameters()}
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed == trainable  # base weights untouched, bit for bit
    assert any("lora_A" in n for n in changed) and any("score" in n for n in changed)
    # Classification counts input tokens (no padding here: 16 rows of 8 tokens).
    assert result.trained_tokens == 16 * 8
    # Without eval_every, the eval dataset is evaluated once, after the last step.
    assert [step for step, _ in result.eval_losses] == [result.steps]


def test_callbacks_receive_metrics_checkpoints_and_eval(tmp_path):
    recorder = Recorder()
    cfg = config(n_epochs=3, log_every=4, checkpoint_every=5, output_dir=tmp_path, eval_every=6)
    model = causal_lora()
    use_cache = model.config.use_cache
    result = train(model, lm_rows(16), collate, cfg, recorder, eval_dataset=lm_rows(8, seed=9))

    metrics = recorder.of(Metrics)
    assert [m.step for m in metrics] == [4, 8, 12]
    for m in metrics:
        assert math.isfinite(m.loss) and m.learning_rate > 0 and m.tokens_per_second > 0
        assert m.grad_norm is not None and m.grad_norm > 0 and 0 < m.epoch <= 3
    assert metrics[-1].trained_tokens == result.trained_tokens
    assert metrics[0].loss == pytest.approx(sum(result.losses[:4]) / 4)

    progress = recorder.of(Progress)
    assert [p.step for p in progress] == list(range(1, 13)) and progress[-1].total_steps == 12
    assert progress[-1].epoch == pytest.approx(3.0)

    saved = recorder.of(CheckpointSaved)
    assert [c.step for c in saved] == [5, 10, 12]  # and the last step, so a job can always resume
    assert result.checkpoints == [
        c.path for c in saved[-2:]
    ]  # keep_checkpoints=2 rotated the first
    assert latest_checkpoint(tmp_path).name == "checkpoint-12"

    evals = recorder.of(EvalResult)
    # Every eval_every steps, at each checkpoint (so each has its validation metrics), at the end.
    assert [e.step for e in evals] == [5, 6, 10, 12] and all(e.eval_loss > 0 for e in evals)
    assert all(e.accuracy is not None and 0 <= e.accuracy <= 1 for e in evals)
    assert result.eval_losses == [(e.step, e.eval_loss) for e in evals]
    assert model.config.use_cache == use_cache  # the Trainer's change is undone


def _manual_accuracy(model, rows) -> float:
    """Top-1 hits over scored positions, one row at a time (no padding, no batching)."""
    hits = total = 0
    model.eval()
    with torch.no_grad():
        for row in rows:
            logits = model(input_ids=row["input_ids"][None]).logits[0]
            if row["labels"].dim() == 0:  # one label per example
                hits, total = hits + int(logits.argmax() == row["labels"]), total + 1
                continue
            predicted, targets = logits[:-1].argmax(-1), row["labels"][1:]
            hits += int((predicted == targets).sum())
            total += len(targets)
    return hits / total


def test_token_accuracy_shifts_like_the_loss_and_skips_unscored_positions():
    # Position t predicts token t + 1; -100 positions are not scored.
    logits = torch.zeros(1, 4, 5)
    for position, token in enumerate([2, 3, 1, 4]):
        logits[0, position, token] = 1.0
    labels = torch.tensor([[-100, 2, 1, -100]])  # targets 2 (miss: 3 predicted) and 1 (hit)
    hits, count = hits_and_counts(logits, labels)
    assert (int(hits), int(count)) == (1, 2)


def test_train_accuracy_is_the_models_top_guess_before_its_first_update():
    rows = class_rows(12)
    model = classifier_lora(random_b=True)
    expected = _manual_accuracy(model, rows)
    recorder = Recorder()
    train(model, rows, collate, config(batch_size=12, log_every=1), recorder)  # one step, all rows
    assert recorder.of(Metrics)[0].accuracy == pytest.approx(expected)
    assert 0 < expected < 1  # the check can fail either way


def test_eval_accuracy_matches_the_trained_model_row_by_row():
    recorder = Recorder()
    model = causal_lora()
    valid = lm_rows(8, seed=9)
    train(model, lm_rows(16), collate, config(n_epochs=3), recorder, eval_dataset=valid)
    (result,) = recorder.of(EvalResult)  # one eval, after the last step
    expected = _manual_accuracy(model, valid)
    assert result.accuracy == pytest.approx(expected) and expected > 0
    assert all(m.accuracy is not None and 0 <= m.accuracy <= 1 for m in recorder.of(Metrics))


# -- resume and accumulation ------------------------------------------------------------------------
class Pauser(Recorder):
    """Stops at ``stop_at`` and asks for a checkpoint there: a pause."""

    def checkpoint_on_stop(self) -> bool:
        return True


def test_a_pause_checkpoints_where_it_stops_and_resumes_exactly(tmp_path):
    rows = lm_rows(24)  # 12 steps over two epochs; checkpoints every 5: none at the pause, step 3
    cfg = config(n_epochs=2, warmup_ratio=0.1, checkpoint_every=5, log_every=1, output_dir=tmp_path)
    straight = causal_lora()
    reference = train(straight, rows, collate, dataclasses_replace(cfg, output_dir=tmp_path / "a"))
    paused = train(
        causal_lora(), rows, collate, dataclasses_replace(cfg, output_dir=tmp_path / "b"), Pauser(3)
    )
    assert paused.cancelled and paused.steps == 3
    checkpoint = latest_checkpoint(tmp_path / "b")
    assert checkpoint.name == "checkpoint-3"  # saved at the pause, off the checkpoint grid
    torch.manual_seed(0)
    resumed_model = load_trainable_adapter(LlamaForCausalLM(tiny_config()), checkpoint)
    resumed = train(
        resumed_model, rows, collate, dataclasses_replace(cfg, output_dir=tmp_path / "b"),
        resume_from_checkpoint=checkpoint,
    )  # fmt: skip
    assert resumed.losses == pytest.approx(reference.losses, rel=1e-5)
    straight_params = dict(straight.named_parameters())
    for name, param in resumed_model.named_parameters():
        if param.requires_grad:
            assert torch.allclose(param, straight_params[name], atol=1e-6), name


def test_resume_from_checkpoint_matches_an_uninterrupted_run(tmp_path):
    rows = lm_rows(24)  # 6 steps per epoch at batch 4; two epochs; interrupted mid-epoch at step 4
    cfg = config(n_epochs=2, warmup_ratio=0.1, checkpoint_every=4, log_every=1, output_dir=tmp_path)

    straight = causal_lora()
    reference = train(straight, rows, collate, dataclasses_replace(cfg, output_dir=tmp_path / "a"))

    first = causal_lora()
    part = train(
        first, rows, collate, dataclasses_replace(cfg, output_dir=tmp_path / "b"), Recorder(4)
    )
    assert part.cancelled and part.steps == 4
    checkpoint = latest_checkpoint(tmp_path / "b")
    assert checkpoint.name == "checkpoint-4"

    # As the worker would after a crash: the untouched base, the checkpoint's adapter, resume.
    torch.manual_seed(0)
    resumed_model = load_trainable_adapter(LlamaForCausalLM(tiny_config()), checkpoint)
    resumed = train(
        resumed_model,
        rows,
        collate,
        dataclasses_replace(cfg, output_dir=tmp_path / "b"),
        resume_from_checkpoint=checkpoint,
    )
    assert resumed.steps == reference.steps == 12
    assert resumed.losses == pytest.approx(reference.losses, rel=1e-5)
    assert resumed.trained_tokens == reference.trained_tokens
    straight_params = dict(straight.named_parameters())
    for name, param in resumed_model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(param, straight_params[name], rtol=1e-5, atol=1e-6)


def first_step_gradients(model, rows, cfg) -> dict[str, torch.Tensor]:
    """The gradient the first optimizer step used, read back from AdamW's first moment."""
    recipe = TrainingRecipe(model, rows, collate, dataclasses_replace(cfg, max_steps=1))
    recipe.setup()
    try:
        recipe.train()
        optimizer = recipe.optimizer
        beta1 = optimizer.param_groups[0]["betas"][0]
        return {
            name: optimizer.state[param]["exp_avg"].cpu() / (1 - beta1)  # m1 = (1 - beta1) g
            for name, param in model.named_parameters()
            if param.requires_grad
        }
    finally:
        recipe.cleanup()


def autograd_gradients(model, rows, loss_fn) -> dict[str, torch.Tensor]:
    model.zero_grad()
    loss_fn(model, collate(rows)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def token_mean_loss(model, batch) -> torch.Tensor:
    """Cross-entropy averaged over every target token of the whole batch (computed by hand)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    losses = torch.nn.functional.cross_entropy(
        logits[:, :-1].reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100, reduction="sum"
    )
    return losses / (targets != -100).sum()


def example_mean_loss(model, batch) -> torch.Tensor:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.nn.functional.cross_entropy(logits, batch["labels"])


@pytest.mark.parametrize(
    ("make_model", "rows", "loss_fn"),
    [
        (causal_lora, lm_rows(4, low=3, high=14), token_mean_loss),  # lengths differ a lot
        (classifier_lora, class_rows(4), example_mean_loss),  # transformers #47688 territory
    ],
    ids=["causal_lm", "sequence_classification"],
)
def test_gradient_accumulation_equals_the_full_batch(make_model, rows, loss_fn):
    cfg = config(n_epochs=1, warmup_ratio=0.0, max_grad_norm=0.0)
    expected = autograd_gradients(make_model(random_b=True), rows, loss_fn)
    for batch_size, accum in ((4, 1), (2, 2), (1, 4)):
        cfg_split = dataclasses_replace(cfg, batch_size=batch_size, grad_accum_steps=accum)
        used = first_step_gradients(make_model(random_b=True), rows, cfg_split)
        assert used.keys() == expected.keys()
        for name, grad in expected.items():
            torch.testing.assert_close(used[name], grad, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(
    not (torch.cuda.is_available() and torch.cuda.is_bf16_supported()),
    reason="needs a CUDA device with bf16",
)
def test_bf16_autocast_on_gpu_trains_fp32_adapters():
    assert resolve_bf16("auto") is True
    model = causal_lora()
    result = train(model, lm_rows(32), collate, config(n_epochs=4, batch_size=8, bf16="auto"))
    first, last = sum(result.losses[:3]) / 3, sum(result.losses[-3:]) / 3
    assert last < first - 1.0, result.losses
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 and p.is_cuda for p in trainable)
