# trademl — the two commands: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export TRADEML_TEST_DATA ?= $(abspath ../shared/data)
export TRADEML_HOME ?= $(abspath .trademl-demo)
# pytest-xdist workers of `make test` (CI has 2 cores).
TEST_WORKERS ?= 2

.PHONY: install demo test test-all lint format bench bench-features bench-train bench-deep bench-backtest bench-panel bench-serve bench-soak bench-skill clean

install: $(STAMP)

$(STAMP): pyproject.toml tests/example_plugin/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel; a looser spec would pull a CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[all,docs,dev,test,bench]'
	# A third-party plug-in package (entry points of every family) that tests/plugins names.
	$(BIN)/pip install --quiet --no-deps -e tests/example_plugin
	touch $(STAMP)

demo: install
	$(BIN)/trademl demo

# The default suite with branch coverage of src/trademl: printed, and failing below the floor
# ([tool.coverage.report] fail_under in pyproject.toml).
test: install
	$(BIN)/pytest -q -n $(TEST_WORKERS) --cov --cov-report=term:skip-covered

test-all: install
	$(BIN)/pytest -q -m ''

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

bench: install
	$(BIN)/python bench/run.py

bench-features: install
	$(BIN)/python bench/features_bench.py

bench-train: install
	$(BIN)/python bench/train_bench.py

bench-deep: install
	$(BIN)/python bench/deep_bench.py

bench-backtest: install
	$(BIN)/python bench/backtest_bench.py

# Panel walk-forward (PanelSplitter + evaluate) against plain LightGBM on the same pooled folds.
bench-panel: install
	$(BIN)/python bench/panel_bench.py $(BENCH_ARGS)

# Load from Debian's wrk (apt-get install wrk); a Python client stands in without it.
bench-serve: install
	$(BIN)/python bench/serve_bench.py $(BENCH_ARGS)

# Learned models against the baselines on all the shared series (DM tests, coverage): the
# README's skill table. About 30 min on 2 cores; writes $(TRADEML_HOME)/skill/skill.{csv,html,md}.
bench-skill: install
	$(BIN)/trademl evaluate $(BENCH_ARGS)

# 10 minutes of wrk at concurrency 32 on the store path, the server's RSS sampled (needs wrk).
bench-soak: install
	$(BIN)/python bench/serve_soak.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .trademl-demo .pytest_cache .mypy_cache .ruff_cache
