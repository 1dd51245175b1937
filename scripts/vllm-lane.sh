#!/usr/bin/env bash
# The vLLM lane's throw-away folder: vLLM's wheel installed without its dependencies (which would
# pull a CUDA torch), beside the few pure packages its import chain to vllm.lora.peft_helper needs.
# Nothing goes into the project's venv; tests/vllm puts the folder on the path of a child process.
set -euo pipefail
cd "$(dirname "$0")/.."
LANE=${VLLM_LANE:-.vllm-lane}
PY=${PY:-.venv/bin/python}
PACKAGES=(
  vllm==0.33.0
  # what importing vllm.lora.peft_helper pulls in (vllm.config -> vllm.utils, the harmony parser)
  cbor2==6.3.0 pyzmq==27.3.0 aiohttp==3.14.5 multidict==7.2.1 yarl==1.25.1 propcache==0.5.4
  aiohappyeyeballs==2.7.1 aiosignal==1.4.0 frozenlist==1.8.0 attrs==26.1.0 openai-harmony==0.0.8
)
STAMP="$LANE/.installed"
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "${PACKAGES[*]}" ]]; then
  exit 0
fi
rm -rf "$LANE"
"$PY" -m pip install -q --no-deps --target "$LANE" "${PACKAGES[@]}"
echo "${PACKAGES[*]}" > "$STAMP"
