# The two commands: `make dev` runs the whole platform; `make test` passes. Both set themselves up.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_PATHS := tests/unit tests/integration tests/e2e tests/deploy

.PHONY: setup dev test bench reliability lint demo rabbitmq tools clean

setup: $(STAMP)

# torch first, pinned: it comes from the machine's local CPU wheel (an unpinned torch pulls CUDA)
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip setuptools wheel
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

tools:
	bash deploy/ensure-tools.sh

rabbitmq:
	bash deploy/ensure-rabbitmq.sh

dev: setup
	$(VENV)/bin/loraserve dev

test: setup rabbitmq tools
	$(PY) -m pytest -q $(wildcard $(TEST_PATHS))

bench: setup rabbitmq
	@failed=""; for name in ingest validate router load engine; do \
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
