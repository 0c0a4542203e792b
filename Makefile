# The two commands a new user needs are `make demo` and `make test`; everything else helps them.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: help venv test lint unit integration demo bench bench-quick clean

help:
	@echo "make demo    start a local Kafka broker and a worker, replay the Kinesis Video intruder scenario"
	@echo "make test    install everything the tests need and run lint, type checks and the whole suite"
	@echo "make bench   run the benchmarks and write docs/BENCHMARKS.md"

$(BIN)/detector: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

venv: $(BIN)/detector

lint: venv
	$(BIN)/ruff check detector
	$(BIN)/mypy --strict detector

test: venv
	scripts/install-test-tools
	$(BIN)/ruff check detector
	$(BIN)/mypy --strict detector
	$(BIN)/detector rules test rules/
	$(BIN)/pytest -q -p no:cacheprovider

demo: venv
	scripts/demo

bench: venv
	$(BIN)/python -m bench

bench-quick: venv
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .venv-tools .mypy_cache .ruff_cache .pytest_cache
