"""Probes kept for reuse: a job whose model, data and probe settings match an earlier job's (or dry
run's) of the same team loads that probe instead of probing again, so a γ or r_ref sweep probes once.

The key covers everything the probe's gradients depend on: the model, the training file's bytes,
and the settings that decide the probe batches (their number, size, order and length) and the
layers probed. The cache is per team: a key derived from a file's hash must not tell one team
anything about another's data. Single-process jobs only: a multi-GPU probe's gradients are averaged
over ranks, and its batches are split among them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from gora import GoraConfig
from gora.probe import ProbeResult, load_probe, save_probe
from service.core.storage import Storage, probe_cache_key
from worker import artifacts
from worker.plan import JobPlan


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def probe_key(plan: JobPlan, cfg: GoraConfig, data_sha256: str) -> str:
    hp = plan.hyperparameters
    settings: dict[str, Any] = {
        "model": plan.model_source["name"],
        "task": plan.task,
        "data_sha256": data_sha256,
        "probe_steps": cfg.probe_steps,
        "batch_seed": cfg.seed,
        "target_modules": cfg.target_modules,
        "modules_to_save": cfg.modules_to_save,
        "micro_batch_size": hp["micro_batch_size"],
        "max_seq_length": hp["max_seq_length"],
    }
    if plan.is_dpo:  # another loss, other gradients (keys of supervised probes stay as they were)
        settings.update(objective="dpo", beta=hp["beta"])
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


class ProbeCache:
    def __init__(self, storage: Storage, team_id: str, work_dir: Path):
        self.storage, self.team_id, self.work_dir = storage, team_id, work_dir

    def load(self, key: str) -> ProbeResult | None:
        stored = probe_cache_key(self.team_id, key)
        if not self.storage.exists(stored):
            return None
        local = artifacts.download_file(self.storage, stored, self.work_dir / f"probe-{key}")
        return load_probe(local)

    def save(self, key: str, probe: ProbeResult) -> None:
        local = self.work_dir / f"probe-{key}"
        local.parent.mkdir(parents=True, exist_ok=True)
        save_probe(probe, local)
        artifacts.upload_file(self.storage, local, probe_cache_key(self.team_id, key))
