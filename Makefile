# The two commands: `make dev` runs the whole platform; `make test` passes. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# the link deploy/ensure-vllm.sh points at the vLLM environment it built
VLLM_PY := $${XDG_CACHE_HOME:-$$HOME/.cache}/loraserve/vllm-current/bin/python
TEST_PATHS := tests/unit tests/integration tests/e2e tests/deploy

.PHONY: setup dev test bench reliability lint demo rabbitmq tools vllm clean browser

setup: $(STAMP)

# torch first, pinned: it comes from the machine's local CPU wheel (an unpinned torch pulls CUDA)
$(STAMP): pyproject.toml deploy/constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c deploy/constraints.txt -e '.[test]'
	touch $(STAMP)

tools:
	bash deploy/ensure-tools.sh

rabbitmq:
	bash deploy/ensure-rabbitmq.sh

redis:
	bash deploy/ensure-redis.sh

# Debian's chromium + chromedriver for the console's browser tests (tests/e2e/console)
browser:
	bash deploy/ensure-browser.sh

# the vLLM worker's own virtualenv, cached outside the clone (~/.cache/loraserve/vllm-*)
vllm:
	bash deploy/ensure-vllm.sh

dev: setup
	$(VENV)/bin/loraserve dev

test: setup rabbitmq redis tools browser vllm
	$(PY) -m pytest -q $(wildcard $(TEST_PATHS))
	$(VLLM_PY) -m pytest -q -o addopts= tests/vllm

bench: setup rabbitmq vllm
	@failed=""; for name in ingest validate router load engine vllm fairness events adapters; do \
		echo "== tests/bench/bench_$$name.py"; \
		timeout --kill-after=30 900 $(PY) -m tests.bench.bench_$$name || failed="$$failed bench_$$name"; \
	done; \
	if [ -n "$$failed" ]; then echo "failed:$$failed"; exit 1; fi

reliability: setup rabbitmq
	$(PY) -m pytest -q $(wildcard tests/reliability)

demo: setup
	$(VENV)/bin/loraserve demo

lint: setup
	$(VENV)/bin/ruff check services shared tests

clean:
	rm -rf $(VENV) .pytest_cache .loraserve
