# The two commands of the README: `make run` and `make test`. Both install first.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/default

.PHONY: install run test test-fast lint typecheck bench clean

install:
	@bash scripts/install.sh

run: install
	$(BIN)/vista run out_dir=$(OUT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q

test-fast: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python bench/bench_stream.py

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
