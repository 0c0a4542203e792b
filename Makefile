# The two commands a new user needs are `make demo` and `make test`; everything else helps them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help venv tools test lint unit integration demo bench bench-quick clean

# Tests that start a real server (Kafka broker, Alertmanager, Prometheus) carry a marker
# (pyproject.toml); `make unit` runs everything else, `make integration` exactly those.
INTEGRATION_MARKERS := integration or alertmanager or prometheus
PYTEST := $(BIN)/pytest -q -p no:cacheprovider

help:
	@echo "make demo    start a local Kafka broker and a worker, replay the Kinesis Video intruder scenario"
	@echo "make test    install everything the tests need and run lint, type checks and the whole suite"
	@echo "make unit    the tests that need no server (static deploy checks included)"
	@echo "make integration  the tests against a real Kafka broker, Alertmanager or Prometheus"
	@echo "make bench   run the benchmarks and write docs/BENCHMARKS.md"

$(BIN)/detector: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

venv: $(BIN)/detector

tools:
	scripts/install-test-tools

lint: venv
	$(BIN)/ruff check detector
	$(BIN)/mypy --strict detector

unit: venv tools
	$(PYTEST) -m "not ($(INTEGRATION_MARKERS))"

integration: venv tools
	$(PYTEST) -m "$(INTEGRATION_MARKERS)"

test: venv tools lint
	$(BIN)/detector rules test rules/
	$(PYTEST)

demo: venv
	scripts/demo

bench: venv
	$(BIN)/python -m bench

bench-quick: venv
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .venv-tools .mypy_cache .ruff_cache .pytest_cache
