"""What the recipe tells its caller: event records, the callback protocol, and the divergence guard.

The worker implements ``TrainingCallbacks`` (every method a no-op by default) and never sees
transformers' ``TrainerCallback``; the recipe adapts one to the other internally. Events are frozen
dataclasses so that ``dataclasses.asdict(event)`` is a ready JSON payload.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    step: int
    total_steps: int
    epoch: float


@dataclass(frozen=True)
class Metrics:
    """Training metrics over the steps since the previous report (``log_every`` steps).

    ``learning_rate`` is the base rate (LoRA A) at ``step``; B and the head run at fixed ratios of it.
    ``tokens_per_second`` counts trained tokens (see TrainingResult) per wall-clock second in this
    window; ``trained_tokens`` counts them since the start of the run, resumed runs included.
    ``grad_norm`` is taken before clipping, at ``step``; None when the backend does not report it.
    ``accuracy``: the mean per-step share of trained tokens whose top prediction is the label (per
    example for a classification head); OpenAI calls it ``mean_token_accuracy``.
    DPO runs only: ``reward_margin``, the mean of β·(log-ratio of chosen − log-ratio of rejected),
    and ``reward_accuracy``, the share of pairs whose chosen answer has the higher reward.
    """

    step: int
    epoch: float
    loss: float  # mean per-step loss over the window
    learning_rate: float
    tokens_per_second: float
    trained_tokens: int
    grad_norm: float | None
    accuracy: float | None = None
    reward_margin: float | None = None
    reward_accuracy: float | None = None


@dataclass(frozen=True)
class CheckpointSaved:
    path: str
    step: int


@dataclass(frozen=True)
class EvalResult:
    step: int
    eval_loss: float
    accuracy: float | None = None  # as Metrics.accuracy, over the whole eval set
    reward_margin: float | None = None  # DPO runs: as Metrics', over the whole eval set
    reward_accuracy: float | None = None


@dataclass(frozen=True)
class TrainingWarning:
    step: int
    code: str  # "loss_diverging"
    message: str


class TrainingCallbacks:
    """Hooks for the caller. Subclass and override what you need; all are no-ops by default.

    Called on the main process only (rank 0 in multi-GPU runs). ``should_stop`` is polled after every
    optimizer step; once it returns True the run ends cleanly before the next step (after saving a
    checkpoint there when ``checkpoint_on_stop`` says so) and the result says ``cancelled=True``.
    """

    def on_progress(self, progress: Progress) -> None:
        """After every optimizer step."""

    def on_metrics(self, metrics: Metrics) -> None:
        """Every ``log_every`` steps and after the last step."""

    def on_checkpoint(self, checkpoint: CheckpointSaved) -> None:
        """After a checkpoint directory is complete on disk."""

    def on_eval(self, result: EvalResult) -> None:
        """After each evaluation of the eval dataset."""

    def on_warning(self, warning: TrainingWarning) -> None:
        """Something the user should know about, training continues."""

    def should_stop(self) -> bool:
        return False

    def checkpoint_on_stop(self) -> bool:
        """Asked when ``should_stop`` said True: whether to save a checkpoint at the step the run
        stops at (a pause, which a later run resumes from exactly there)."""
        return False


class TrainingDiverged(RuntimeError):
    """The loss became non-finite or exploded; training was stopped."""

    def __init__(self, step: int, loss: float, reason: str):
        self.step, self.loss, self.reason = step, loss, reason
        super().__init__(
            f"training diverged at step {step} ({reason}; loss {loss:.4g}). Lower the learning rate, "
            "e.g. by 2-4x (learning_rate or learning_rate_multiplier); for GoRA a smaller gamma also "
            "helps, since its gradient init already takes a step of size gamma."
        )


@dataclass
class Verdict:
    warn: str | None = None  # a message when the warning threshold is passed for the first time
    stop: str | None = None  # a reason when training must stop


class DivergenceGuard:
    """Watches per-step losses; warns once, then stops, when the smoothed loss runs away.

    Reference: the median of the first ``window`` losses (the model before or barely after its first
    updates; a median so that an early spike does not raise the bar). Smoothed loss: an exponential
    moving average with span ``window``, bias-corrected. A non-finite loss stops at once (AdamW cannot
    recover from NaN weights). The guard catches explosions, not a quiet collapse to a constant
    prediction, whose loss stays near the start; watch the eval loss for that.
    """

    def __init__(self, warn_ratio: float, stop_ratio: float, window: int):
        self.warn_ratio, self.stop_ratio, self.window = warn_ratio, stop_ratio, window
        self._decay = 1.0 - 2.0 / (window + 1.0)
        self._first: list[float] = []
        self._ema = 0.0
        self._weight = 0.0
        self.warned = False

    @property
    def reference(self) -> float | None:
        if not self._first:
            return None
        ordered = sorted(self._first)
        return ordered[(len(ordered) - 1) // 2]

    @property
    def smoothed(self) -> float | None:
        return self._ema / self._weight if self._weight else None

    def observe(self, loss: float) -> Verdict:
        if not math.isfinite(loss):
            return self._escalate(f"the loss is {loss}", "non-finite loss")
        if len(self._first) < self.window:
            self._first.append(loss)
        self._ema = self._decay * self._ema + (1.0 - self._decay) * loss
        self._weight = self._decay * self._weight + (1.0 - self._decay)
        reference, smoothed = self.reference, self.smoothed
        if reference is None or smoothed is None or reference <= 0:
            return Verdict()
        ratio = smoothed / reference
        if ratio > self.stop_ratio:
            return self._escalate(
                f"the smoothed loss {smoothed:.4g} is {ratio:.1f}x the initial {reference:.4g}",
                f"smoothed loss above {self.stop_ratio:g}x the initial loss",
            )
        if ratio > self.warn_ratio and not self.warned:
            self.warned = True
            return Verdict(warn=self._warning_text(smoothed, reference, ratio))
        return Verdict()

    def _escalate(self, what: str, reason: str) -> Verdict:
        # The caller always hears a warning before the stop, even when both come in one step.
        warn = None
        if not self.warned:
            self.warned = True
            warn = f"{what}; training is diverging. Lower the learning rate (e.g. by 2-4x)."
        return Verdict(warn=warn, stop=reason)

    def _warning_text(self, smoothed: float, reference: float, ratio: float) -> str:
        return (
            f"the smoothed loss {smoothed:.4g} has risen to {ratio:.1f}x the initial {reference:.4g}; "
            f"training stops at {self.stop_ratio:g}x. If it keeps rising, lower the learning rate "
            "(e.g. by 2-4x)."
        )
