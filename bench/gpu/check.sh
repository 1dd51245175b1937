#!/usr/bin/env bash
# The GPU check: one device call (about 6 minutes on an H200), for the first session lent a GPU.
#   here, once:   bash bench/gpu/wheels.sh     (the service's wheels for the device's Python, in .whl/)
#   on the device (the device tool's run): command "bash bench/gpu/check.sh", carry [".whl"], timeout_s 540
# It measures, on a random-initialised Llama-shaped 1B model in bf16 (no weights to download):
#   1. bench/bench_library.py: GoRA / PEFT LoRA training-step throughput, probe time per batch against a
#      LoRA step, and the probe's peak GPU memory against LoRA training's;
#   2. bench/gpu/service_check.py: a bf16 job through the real API and `gora worker --gpus 0` to
#      `succeeded`, a cancel that gives the GPU memory back, a CUDA out-of-memory failing the job as
#      `out_of_memory`.
# Figures go to $OUT (the device tool brings them back) and to the output.
set -euo pipefail
cd "$(dirname "$0")/../.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__)" | tee -a "$OUT/gpu.txt"
timeout 240 python3 bench/bench_library.py --model random-llama-1b --dtype bfloat16 \
    --batch-size 8 --seq-len 512 --steps 10 --probe-steps 8 2>&1 | tee "$OUT/library.txt"
timeout 280 python3 bench/gpu/service_check.py --model random-llama-1b --steps 20 2>&1 | tail -n 1 | tee "$OUT/service.json"
