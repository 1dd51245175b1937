"""GoRA-DPO against LoRA-DPO on arithmetic preference pairs (SmolLM2-135M-Instruct, CPU).

Each generated problem (``bench.quality.arithmetic``) becomes a chat pair: the worked answer preferred
over a plausible wrong one (the last step's result off by 1-5, carried into "The answer is"). Train,
validation and test pairs are disjoint. Each method's rate is chosen on validation (DPO loss over a
1-5 ladder, seed 0), then run with 3 seeds. Reported on the test pairs: reward accuracy (the
policy's implicit reward ranks the preferred answer first; the reference is the base), pair accuracy
(the model gives the preferred answer the higher likelihood: the base has one too) and exact match
of greedy answers, before and after. Beside it, the allocation GoRA picks when its probe measures
DPO's loss and when it measures SFT's on the same (preferred) answers.

    python -m bench.quality.dpo                 # ~40 min on 2 CPU cores; writes bench/quality/dpo.json
    python -m bench.quality.dpo --quick         # a smoke run: tiny sets, one rate, one seed
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from bench.quality import arithmetic
from gora import GoraConfig, get_gora_model, load_base_model
from gora.adapters import target_layers
from gora.data.encoding import build_dataset
from gora.data.loading import collator_for, make_batches
from gora.data.preference import preference_collator
from gora.probe import probe_gradients
from gora.train import TrainingConfig, train
from gora.train.preference import completion_logps, dpo_probe_loss

OUT = Path(__file__).with_name("dpo.json")
MODEL = "smollm2-135m"
BETA = 0.1
MAX_LENGTH = 192
RATES = (2e-5, 1e-4, 5e-4)
SEEDS = (0, 1, 2)
FULL = {"train": 128, "valid": 32, "test": 64, "rates": RATES, "seeds": SEEDS}
QUICK = {"train": 16, "valid": 8, "test": 8, "rates": (1e-4,), "seeds": (0,)}
ADAPTER = {"r_ref": 8, "probe_steps": 8, "target_modules": "all-linear"}
BATCH = 8
EVAL_BATCH = 16


def question(row: dict[str, Any]) -> str:
    return row["prompt"].removeprefix("Question: ").removesuffix("\nAnswer:")


def wrong_answer(row: dict[str, Any], rng: random.Random) -> str:
    """The worked answer with its last result (and so the final answer) off by 1-5."""
    right = row["answer"]
    wrong = right + rng.choice([-1, 1]) * rng.randint(1, 5)
    work = row["completion"].strip()
    head, _, _ = work.rpartition(f"= {right}. The answer is {right}.")
    return f"{head}= {wrong}. The answer is {wrong}."


def to_pair(row: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": question(row)}]},
        "preferred_output": [{"role": "assistant", "content": row["completion"].strip()}],
        "non_preferred_output": [{"role": "assistant", "content": wrong_answer(row, rng)}],
        "answer": row["answer"],
    }


def splits(sizes: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    train, test = arithmetic.train_test_split(sizes["train"] + sizes["valid"], sizes["test"])
    rng = random.Random(7)
    pairs = [to_pair(row, rng) for row in train]
    return {
        "valid": pairs[: sizes["valid"]],
        "train": pairs[sizes["valid"] :],
        "test": [to_pair(row, rng) for row in test],
    }


def encode(pairs, tokenizer):
    rows = [{k: v for k, v in p.items() if k != "answer"} for p in pairs]
    dataset, _ = build_dataset(rows, "preference", tokenizer, "causal_lm", MAX_LENGTH)
    return dataset


def load(seed: int):
    return load_base_model(MODEL, "causal_lm", seed=seed)


# --- metrics ---------------------------------------------------------------------------------------
@torch.no_grad()
def pair_logps(model, dataset, pad_id: int) -> torch.Tensor:
    """(pairs, 2): log π(chosen), log π(rejected) of each pair."""
    collate, out = preference_collator(pad_id), []
    model.eval()
    for start in range(0, len(dataset), EVAL_BATCH):
        batch = collate([dataset[i] for i in range(start, min(start + EVAL_BATCH, len(dataset)))])
        chosen, rejected = completion_logps(model, batch).chunk(2)
        out.append(torch.stack([chosen, rejected], dim=1))
    return torch.cat(out)


def preference_scores(model, dataset, pad_id: int) -> dict[str, float]:
    """DPO loss and reward accuracy against the base (the adapter off), and pair accuracy."""
    policy = pair_logps(model, dataset, pad_id)
    with model.disable_adapter():
        reference = pair_logps(model, dataset, pad_id)
    rewards = BETA * (policy - reference)
    margin = rewards[:, 0] - rewards[:, 1]
    return {
        "dpo_loss": float(-torch.nn.functional.logsigmoid(margin).mean()),
        "reward_accuracy": float((margin > 0).float().mean()),
        "reward_margin": float(margin.mean()),
        "pair_accuracy": float((policy[:, 0] > policy[:, 1]).float().mean()),
        "base_pair_accuracy": float((reference[:, 0] > reference[:, 1]).float().mean()),
    }


@torch.no_grad()
def exact_match(model, tokenizer, pairs) -> float:
    """Greedy answers to the test questions (chat template, left-padded batches)."""
    model.eval()
    pad, hits = tokenizer.pad_token_id, 0
    for start in range(0, len(pairs), EVAL_BATCH):
        chunk = pairs[start : start + EVAL_BATCH]
        prompts = [
            tokenizer.apply_chat_template(p["input"]["messages"], tokenize=False,
                                          add_generation_prompt=True) for p in chunk
        ]  # fmt: skip
        encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        width = max(map(len, encoded))
        ids = torch.tensor([[pad] * (width - len(e)) + e for e in encoded])
        mask = (
            torch.arange(width)[None] >= torch.tensor([width - len(e) for e in encoded])[:, None]
        ).long()
        generated = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=72,
                                   do_sample=False, pad_token_id=pad)  # fmt: skip
        texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
        hits += sum(
            arithmetic.final_number(t) == p["answer"] for t, p in zip(texts, chunk, strict=True)
        )
    return hits / len(pairs)


# --- runs ------------------------------------------------------------------------------------------
def probe(base, cfg: GoraConfig, dataset, collator, loss_fn=None):
    batches = make_batches(dataset, collator, BATCH, seed=cfg.seed)
    kwargs = {"loss_fn": loss_fn} if loss_fn else {}
    return probe_gradients(base, target_layers(base, cfg), batches, cfg.probe_steps, **kwargs)


def run_once(method: str, lr: float, seed: int, data, tokenizer) -> tuple[dict[str, Any], Any]:
    base, _ = load(seed)
    pad = tokenizer.pad_token_id
    collator = preference_collator(pad)
    train_set = encode(data["train"], tokenizer)
    cfg = GoraConfig(type=method, seed=seed, **ADAPTER)
    started = time.perf_counter()
    found = probe(base, cfg, train_set, collator, dpo_probe_loss(BETA)) if cfg.is_gora else None
    model = get_gora_model(base, cfg, probe=found)
    config = TrainingConfig(objective="dpo", beta=BETA, learning_rate=lr, n_epochs=1,
                            batch_size=BATCH, seed=seed, log_every=4).resolve(
        adapter_type=method, task="causal_lm", n_examples=len(train_set))  # fmt: skip
    result = train(model, train_set, collator, config, processing_class=tokenizer)
    record = {
        "method": method, "lr": lr, "seed": seed, "steps": result.steps,
        "wall_s": round(time.perf_counter() - started, 1), "losses": result.losses,
        "valid": preference_scores(model, encode(data["valid"], tokenizer), pad),
        "ranks": {layer["name"]: layer["rank"] for layer in model.gora_report.to_dict()["layers"]},
    }  # fmt: skip
    print(
        json.dumps({k: record[k] for k in ("method", "lr", "seed", "wall_s", "valid")}), flush=True
    )
    return record, model


def test_scores(record: dict[str, Any], model, data, tokenizer) -> dict[str, Any]:
    record["test"] = preference_scores(
        model, encode(data["test"], tokenizer), tokenizer.pad_token_id
    )
    record["test"]["exact_match"] = exact_match(model, tokenizer, data["test"])
    print(json.dumps({k: v for k, v in record.items() if k not in ("losses", "ranks")}), flush=True)
    return record


def allocation_shapes(data, tokenizer) -> dict[str, Any]:
    """GoRA's ranks when its probe measures DPO's loss, and SFT's on the preferred answers."""
    base, _ = load(0)
    cfg = GoraConfig(type="gora", seed=0, **ADAPTER)
    pairs = encode(data["train"], tokenizer)
    dpo_probe = probe(base, cfg, pairs, preference_collator(tokenizer.pad_token_id),
                      dpo_probe_loss(BETA))  # fmt: skip
    chats = [{"messages": p["input"]["messages"] + p["preferred_output"]} for p in data["train"]]
    sft_set, _ = build_dataset(chats, "chat", tokenizer, "causal_lm", MAX_LENGTH)
    sft_probe = probe(base, cfg, sft_set, collator_for(tokenizer))
    shapes = {}
    for name, found in (("dpo", dpo_probe), ("sft", sft_probe)):
        report = get_gora_model(load(0)[0], cfg, probe=found).gora_report.to_dict()
        shapes[name] = {layer["name"]: layer["rank"] for layer in report["layers"]}
    return shapes


def summarise(runs: list[dict], chosen: dict[str, float], base: dict, shapes: dict) -> dict:
    table = {}
    for method, lr in chosen.items():
        tested = [
            r["test"] for r in runs if r["method"] == method and r["lr"] == lr and "test" in r
        ]
        table[method] = {
            "lr": lr, "seeds": len(tested),
            **{k: (statistics.mean(t[k] for t in tested), statistics.pstdev(t[k] for t in tested))
               for k in ("reward_accuracy", "pair_accuracy", "exact_match", "reward_margin")},
        }  # fmt: skip
    return {"base": base, "chosen": table, "runs": runs, "allocation": shapes}


def _ranks_by_kind(ranks: dict[str, int]) -> dict[str, float]:
    """Each module kind's share of the total rank (q_proj, ..., down_proj)."""
    total, kinds = sum(ranks.values()), {}
    for name, rank in ranks.items():
        kind = name.rsplit(".", 1)[-1]
        kinds[kind] = kinds.get(kind, 0) + rank
    return {kind: 100 * value / total for kind, value in sorted(kinds.items())}


def _ranks_by_depth(ranks: dict[str, int], layers: int = 30, groups: int = 3) -> list[float]:
    """The share of the total rank in each third of the layers (first, middle, last)."""
    total, shares = sum(ranks.values()), [0.0] * groups
    for name, rank in ranks.items():
        index = int(name.split(".layers.")[1].split(".")[0])
        shares[min(groups - 1, index * groups // layers)] += 100 * rank / total
    return shares


def markdown(summary: dict[str, Any]) -> str:
    """The tables of docs/benchmarks.md ("Preference tuning"), from dpo.json."""

    def cell(pair):
        return f"{100 * pair[0]:.1f} ± {100 * pair[1]:.1f}"

    base = summary["base"]
    lines = ["| | LoRA-DPO | GoRA-DPO | base |", "|---|---|---|---|"]
    chosen = summary["chosen"]
    lines.append(
        f"| rate (validation DPO loss, seed 0) | {chosen['lora']['lr']:g} | {chosen['gora']['lr']:g} | |"
    )
    lines.append(
        f"| reward accuracy vs the base | {cell(chosen['lora']['reward_accuracy'])} | {cell(chosen['gora']['reward_accuracy'])} | (50) |"
    )
    lines.append(
        f"| pair accuracy (likelihood) | {cell(chosen['lora']['pair_accuracy'])} | {cell(chosen['gora']['pair_accuracy'])} | {100 * base['pair_accuracy']:.1f} |"
    )
    lines.append(
        f"| exact match of greedy answers | {cell(chosen['lora']['exact_match'])} | {cell(chosen['gora']['exact_match'])} | {100 * base['exact_match']:.1f} |"
    )
    lines.append(
        f"| reward margin (β · log-ratio difference) | {chosen['lora']['reward_margin'][0]:.2f} | {chosen['gora']['reward_margin'][0]:.2f} | |"
    )
    lines += ["", "| method | validation DPO loss by rate (seed 0) |", "|---|---|"]
    for method in ("lora", "gora"):
        points = [r for r in summary["runs"] if r["method"] == method and r["seed"] == 0]
        lines.append(
            f"| {method} | "
            + ", ".join(f"{r['lr']:g}: {r['valid']['dpo_loss']:.3f}" for r in points)
            + " |"
        )
    shapes = summary["allocation"]
    lines += [
        "",
        "| GoRA's ranks, share of the total | "
        + " | ".join(_ranks_by_kind(shapes["dpo"]))
        + " | layers 0-9 | 10-19 | 20-29 |",
        "|---" * (len(_ranks_by_kind(shapes["dpo"])) + 4) + "|",
    ]
    for name in ("dpo", "sft"):
        kinds, depth = _ranks_by_kind(shapes[name]), _ranks_by_depth(shapes[name])
        lines.append(
            f"| probe of the {name.upper()} loss | "
            + " | ".join(f"{v:.1f}" for v in kinds.values())
            + " | "
            + " | ".join(f"{v:.1f}" for v in depth)
            + " |"
        )
    same = sum(shapes["dpo"][k] == shapes["sft"][k] for k in shapes["dpo"])
    lines.append(f"\nLayers given the same rank by both probes: {same} of {len(shapes['dpo'])}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true", help="print the tables from dpo.json")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(OUT.read_text())))
        return
    torch.set_num_threads(2)
    sizes = QUICK if args.quick else FULL
    data = splits(sizes)
    base_model, tokenizer = load(0)
    base_test = encode(data["test"], tokenizer)
    pair = pair_logps(base_model, base_test, tokenizer.pad_token_id)
    base = {"pair_accuracy": float((pair[:, 0] > pair[:, 1]).float().mean()),
            "exact_match": exact_match(base_model, tokenizer, data["test"])}  # fmt: skip
    print(json.dumps({"base": base}), flush=True)
    runs, chosen = [], {}
    for method in ("lora", "gora"):
        # The rate: lowest validation DPO loss at seed 0; only that run is scored on test.
        searched = [
            run_once(method, lr, sizes["seeds"][0], data, tokenizer) for lr in sizes["rates"]
        ]
        best, model = min(searched, key=lambda pair: pair[0]["valid"]["dpo_loss"])
        chosen[method] = best["lr"]
        runs += [record for record, _ in searched]
        test_scores(best, model, data, tokenizer)
        del searched, model
        for seed in sizes["seeds"][1:]:
            runs.append(
                test_scores(*run_once(method, best["lr"], seed, data, tokenizer), data, tokenizer)
            )
    shapes = allocation_shapes(data, tokenizer)
    out = OUT.with_name("dpo_quick.json") if args.quick else OUT
    out.write_text(json.dumps(summarise(runs, chosen, base, shapes), indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
