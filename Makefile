# The two commands of the README: `make run` and `make test`. Both install first.
VENV ?= .venv
BIN := $(VENV)/bin
OUT ?= runs/default
SHAPE ?= A

.PHONY: install peers run test suite test-fast checks lint typecheck bench bench-analysis bench-train clean

install:
	@bash scripts/install.sh

# Test-only environments with the peer libraries (SAELens, dictionary_learning, sparsify):
# the interop tests load their files in them and theirs in vista.
peers:
	@bash bench/peers/setup.sh saelens sparsify dictlearn

run: install
	$(BIN)/vista run out_dir=$(OUT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# ruff and mypy run beside the suite, and the suite builds the peers' environments in the
# background (mostly downloads) until the interop tests need them (tests/peers.py).
test: install
	@$(MAKE) --no-print-directory -j2 checks suite

suite: install
	VISTA_BUILD_PEERS=1 VISTA_REQUIRE_PEERS=1 VISTA_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

checks: lint typecheck

test-fast: lint typecheck
	$(BIN)/python -m pytest -q -m "not slow"

bench: install
	$(BIN)/python bench/bench_stream.py
	$(BIN)/python bench/bench_shards.py
	$(BIN)/python bench/bench_e2e.py
	$(BIN)/python bench/bench_extract.py

# The analysis layer: shared pass vs bare encode, feature_auc at 16k latents, ANOVA, memory at
# FairFace size, analysis=all on runs/default (make run first).
bench-analysis: install
	$(BIN)/python bench/bench_analysis.py --out bench/results/analysis.md

# Training throughput against the peers (builds bench/.envs/* on first use; ~15 min at shape A).
bench-train: install
	@bash bench/peers/setup.sh
	$(BIN)/python bench/bench_train.py --shape $(SHAPE) --family --out bench/results/train_$(SHAPE).md

clean:
	rm -rf runs .pytest_cache .mypy_cache .ruff_cache
