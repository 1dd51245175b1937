"""The learning-rate search (successive halving from one initial adapter) and the collapse check."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from gora.train import search as search_module
from gora.train import train
from gora.train.checkpoints import latest_checkpoint
from gora.train.collapse import classifier_collapse, classify
from gora.train.defaults import rate_ladder
from gora.train.search import EVAL_STEP_COST, TRIAL_OVERHEAD_STEPS, LearningRateSearch, plan_rungs
from tests.gora.train.test_train import causal_lora, class_rows, classifier_lora, collate, config
from tests.gora.train.test_train import lm_rows as lm_rows


def test_the_ladder_is_1_2_5_around_the_default():
    assert rate_ladder(2e-4) == [1e-4, 2e-4, 5e-4]
    assert rate_ladder(1e-4) == [5e-5, 1e-4, 2e-4]
    assert rate_ladder(5e-4) == [2e-4, 5e-4, 1e-3]
    assert rate_ladder(3e-4) == [1e-4, 2e-4, 5e-4]  # snapped to the nearest rung first
    assert rate_ladder(2e-4, below=1, above=2) == [1e-4, 2e-4, 5e-4, 1e-3]


@pytest.mark.parametrize("candidates", [3, 4])
@pytest.mark.parametrize("total", [4, 10, 24, 48, 125, 1000])
@pytest.mark.parametrize("budget", [1.5, 1.75, 3.0])
def test_rungs_halve_the_trials_within_the_budget(candidates, total, budget):
    rungs = plan_rungs(total, candidates, eval_batches=2, budget=budget, min_rung=2)
    assert rungs == sorted(rungs) and all(2 <= r < total for r in rungs)
    per_scoring = EVAL_STEP_COST * 2 + TRIAL_OVERHEAD_STEPS

    def extra(rungs):  # the search's cost beyond one run: dropped trials' steps, scorings
        alive, cost = candidates, 0.0
        for i, end in enumerate(rungs):
            keep = 1 if i == len(rungs) - 1 else math.ceil(alive / 2)  # after the last, one goes on
            cost += per_scoring * alive + (alive - keep) * end
            alive = keep
        return cost

    assert (total + extra(rungs)) / total <= budget
    assert len(rungs) <= 2  # three or four trials: two rungs at most
    if rungs:
        assert rungs[0] == max(2, math.ceil(0.12 * total))  # short: drops the clearly worse
        later = [*rungs[:-1], rungs[-1] + 1]  # the last is the latest the budget allows
        assert rungs[-1] == total - 1 or (total + extra(later)) / total > budget
    if total >= 125 or (total >= 48 and budget >= 1.75):
        assert rungs, "long enough to search"


def test_a_search_whose_last_rung_is_early_warns(tmp_path):
    # 24 steps, four rates, 1.75 plain jobs: the last rung lands at step 3 of 24.
    assert plan_rungs(24, 4, eval_batches=1, budget=1.75, min_rung=2)[-1] < 0.4 * 24
    heard = []
    LearningRateSearch(
        causal_lora(seed=0), lm_rows(48), collate, config(n_epochs=2, output_dir=tmp_path),
        lm_rows(4, seed=9), candidates=[1e-3, 3e-3, 1e-2, 3e-2], budget=1.75,
        notify=lambda message, data: heard.append((message, data)),
    ).run()  # fmt: skip
    early = [(m, d) for m, d in heard if d.get("code") == "search_decides_early"]
    assert len(early) == 1 and early[0][1]["level"] == "warn"
    assert early[0][0].startswith("Learning-rate search decides early: within 1.75x a plain job")


def test_a_run_too_short_to_search_within_the_budget_trains_at_the_default(tmp_path):
    assert plan_rungs(6, 4, eval_batches=2, budget=1.75, min_rung=2) == []
    heard = []
    result = LearningRateSearch(
        causal_lora(seed=0), lm_rows(24), collate, config(output_dir=tmp_path, learning_rate=2e-3),
        lm_rows(8, seed=9), candidates=[1e-3, 2e-3, 5e-3, 1e-2],
        notify=lambda message, data: heard.append(message),
    ).run()  # fmt: skip
    assert result.chosen.learning_rate == 2e-3 and result.trial_steps == 0 and result.cost == 1
    assert sorted(t.status for t in result.trials) == ["chosen", "skipped", "skipped", "skipped"]
    assert heard and heard[0].startswith("Learning-rate search skipped: 6 steps are too few")


def test_the_winner_continues_its_trial_to_the_run_a_plain_job_at_its_rate_makes(tmp_path):
    rows, valid = lm_rows(48), lm_rows(16, seed=9)
    base = config(n_epochs=2, log_every=2, output_dir=tmp_path / "search")  # 24 steps
    model = causal_lora(seed=0)
    heard = []
    result = LearningRateSearch(
        model, rows, collate, base, valid, candidates=[1e-3, 3e-3, 1e-2, 3e-2], budget=3.0,
        notify=lambda message, data: heard.append(data),
    ).run()  # fmt: skip
    statuses = sorted(t.status for t in result.trials)
    assert statuses == ["chosen", "dropped", "dropped", "dropped"]
    assert result.rung_steps == plan_rungs(24, 4, 4, 3.0, min_rung=2)
    expected, alive = [], 4  # each rung drops the worse half; after the last, all but one go
    for i, end in enumerate(result.rung_steps):
        keep = 1 if i == len(result.rung_steps) - 1 else math.ceil(alive / 2)
        expected += [end] * (alive - keep)
        alive = keep
    assert sorted(t.steps for t in result.trials if t.status == "dropped") == expected
    chosen = result.chosen
    finalists = [t for t in result.trials if t.steps == chosen.steps]
    assert chosen.score.valid_loss == min(t.score.valid_loss for t in finalists)
    assert chosen.score.valid_accuracy is None  # a language model is ranked by its loss
    assert len(heard) == sum(len(t.scores) for t in result.trials)
    assert 1 < result.cost <= 3.0 and result.to_dict()["chosen"] == chosen.learning_rate

    at_chosen = dataclasses.replace(base, learning_rate=chosen.learning_rate)
    continued = train(
        model, rows, collate, dataclasses.replace(at_chosen, output_dir=tmp_path / "rest"),
        resume_from_checkpoint=latest_checkpoint(chosen.output_dir),
    )  # fmt: skip
    plain_model = causal_lora(seed=0)
    plain = train(plain_model, rows, collate, dataclasses.replace(at_chosen, output_dir=None))
    assert continued.steps == plain.steps == 24
    assert continued.losses == pytest.approx(plain.losses, rel=1e-5)  # the trial's steps kept
    got, want = dict(model.named_parameters()), dict(plain_model.named_parameters())
    for name, parameter in want.items():
        if parameter.requires_grad:
            torch.testing.assert_close(got[name], parameter, atol=1e-5, rtol=1e-4)


def test_a_collapse_counts_from_the_second_rung_and_such_a_trial_is_never_chosen(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(search_module, "MIN_STEPS", 1)  # this run's 16 steps are below 20
    rows, valid = class_rows(32), class_rows(16, seed=5)
    asked = []

    def one_class(predicted, labels):  # flags the 1e-3 trial (the best) whenever asked
        asked.append(current[0])
        return "flagged" if current[0] == 1e-3 else None

    monkeypatch.setattr(search_module, "one_class", one_class)

    # 1e-6 barely moves and 1e-2 overshoots: the halving drops them at the first rung.
    search = LearningRateSearch(
        classifier_lora(seed=0), rows, collate, config(n_epochs=2, output_dir=tmp_path), valid,
        candidates=[1e-6, 1e-4, 1e-3, 1e-2], budget=3.0,
    )  # fmt: skip
    advance, current = search._advance, [None]

    def tracking(trial, end):
        current[0] = trial.learning_rate
        advance(trial, end)

    search._advance = tracking
    result = search.run()
    assert result.rung_steps == [2, 14]
    by_rate = {t.learning_rate: t for t in result.trials}
    assert [by_rate[r].status for r in (1e-6, 1e-2)] == ["dropped", "dropped"]
    assert sorted(asked) == [1e-4, 1e-3]  # asked at the second rung only
    assert by_rate[1e-3].status == "collapsed" and by_rate[1e-3].reason == "flagged"
    assert result.chosen is by_rate[1e-4]


def test_classify_gives_every_answer_and_the_mean_loss_over_examples():
    rows, model = class_rows(10), classifier_lora(seed=0)
    predicted, labels, loss = classify(model, rows, collate, batch_size=4)  # batches of 4, 4, 2
    batch = collate(list(rows))
    truth = batch.pop("labels")
    with torch.no_grad():
        model.eval()
        logits = model(**batch).logits
    assert labels == truth.tolist() and predicted == logits.argmax(-1).tolist()
    assert loss == pytest.approx(float(torch.nn.functional.cross_entropy(logits, truth)), rel=1e-5)


def test_a_classifier_answering_one_class_is_a_collapse():
    rows = class_rows(24)
    model = classifier_lora(seed=0)
    assert classifier_collapse(model, rows, collate) is None  # a random head answers several
    with torch.no_grad():
        model.base_model.model.score.modules_to_save["default"].weight.zero_()
    found = classifier_collapse(model, rows, collate)
    assert found == "the classifier predicts class 0 for all 24 examples"
    assert classifier_collapse(model, lm_rows(4), collate) is None  # not classification data
