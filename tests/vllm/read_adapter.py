"""Run by tests/vllm in a child process whose path holds the vLLM lane: what vLLM's own loader
(``vllm.lora.peft_helper.PEFTHelper``) reads from an adapter directory, as JSON on stdout.

argv: the adapter directory, then the module names to ask about.
"""

from __future__ import annotations

import json
import sys

from vllm.config.lora import LoRAConfig
from vllm.lora.peft_helper import PEFTHelper


def main(adapter_dir: str, modules: list[str]) -> None:
    helper = PEFTHelper.from_local_dir(adapter_dir, max_position_embeddings=None)
    helper.validate_legal(LoRAConfig(max_lora_rank=256))  # raises on what vLLM would refuse
    ranks = {name: list(helper.get_rank_and_scaling(name)) for name in modules}
    print(json.dumps({"ranks": ranks, "use_rslora": helper.use_rslora}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
