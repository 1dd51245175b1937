"""A job started from another job's adapter (``from_checkpoint``) trains on new data from that
adapter, with its ranks and without a probe, through a real worker; and the team's webhook hears
of it succeeding."""

from __future__ import annotations

import json

import pytest
import torch
from standardwebhooks.webhooks import Webhook

from tests.helpers.api import jsonl, upload
from tests.helpers.jobs import adapter_weights, classification_rows, events, submit, wait_for
from tests.helpers.models import MINILM
from tests.helpers.webhooks import Receiver

pytestmark = pytest.mark.slow
ADAPTER = {"type": "gora", "r_ref": 4, "target_modules": ["query", "value"], "probe_steps": 2}


def test_a_warm_start_keeps_the_adapter_and_its_ranks(stack, team, worker, tmp_path):
    receiver = Receiver([200]).start()
    hook = stack.client.post(
        "/v1/webhooks",
        json={"url": receiver.url, "events": ["fine_tuning.job.succeeded"]},
        headers=team.headers,
    ).json()
    source = submit(stack.client, team, classification_rows(), model=MINILM, adapter=ADAPTER)
    wait_for(stack.client, team, source["id"], {"succeeded"})

    new_rows = [{"text": f"{r['text']} again", "label": r["label"]} for r in classification_rows()]
    file_id = upload(stack.client, team, jsonl(new_rows))["id"]
    hyperparameters = {"n_epochs": 1, "batch_size": 4, "max_steps": 2,
                       "learning_rate_multiplier": 1e-6}  # fmt: skip
    body = {"model": MINILM, "training_file": file_id, "from_checkpoint": source["id"],
            "hyperparameters": hyperparameters}  # fmt: skip
    created = stack.client.post("/v1/fine_tuning/jobs", json=body, headers=team.headers)
    assert created.status_code == 200, created.text
    warm = wait_for(stack.client, team, created.json()["id"], {"succeeded"})
    assert warm["from_checkpoint"] == source["id"]

    log = [e["message"] for e in events(stack.client, team, warm["id"])]
    assert f"Warm start from {source['id']}: its adapter and ranks are kept, no probe" in log
    assert not any(m.startswith("Probing gradients") for m in log), log
    url = "/v1/fine_tuning/jobs/{}/allocation"
    before = stack.client.get(url.format(source["id"]), headers=team.headers).json()
    after = stack.client.get(url.format(warm["id"]), headers=team.headers).json()
    assert [(x["name"], x["rank"]) for x in after["layers"]] == [
        (x["name"], x["rank"]) for x in before["layers"]
    ]
    assert after["probe"]["ranks_from"] == source["id"] and after["probe"]["probed"] is False

    # At a learning rate of ~1e-10 two steps move nothing that shows: the warm job's adapter is
    # the source's, which a fresh probe and init would not be.
    start = adapter_weights(stack, team, source["id"], tmp_path / "source")
    end = adapter_weights(stack, team, warm["id"], tmp_path / "warm")
    assert start.keys() == end.keys()
    for name in start:
        torch.testing.assert_close(end[name], start[name], atol=1e-6, rtol=0)

    received = receiver.wait(2)  # both jobs succeeded: one signed notice each
    notified = [
        Webhook(hook["secret"]).verify(body, headers)["data"]["id"] for headers, body in received
    ]
    assert sorted(notified) == sorted([source["id"], warm["id"]])
    assert all(json.loads(b)["type"] == "fine_tuning.job.succeeded" for _, b in received)
    receiver.stop()
