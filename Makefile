# Every target sets itself up on a fresh machine: `make demo` and `make test` need nothing installed first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: install browser java demo test lint typecheck bench clean

# torch first: the CPU build, from local disk. pyproject asks for torch>=2.4,<3, which it satisfies, so the
# editable install keeps it (resolving torch itself would download a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ".[dev,service,mlflow,spark]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/custseq demo --out demo-output

lint: install
	$(BIN)/ruff check src tests $(wildcard benchmarks)
	$(BIN)/ruff format --check src tests $(wildcard benchmarks)

# mypy with pyproject's [tool.mypy] settings (files = src/custseq)
typecheck: install
	$(BIN)/mypy

# Debian's chromium for the report's browser test; without root (and without it) those tests skip and say so.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "note: chromium not installed (needs root); the report's browser tests will be skipped"

# Debian's Java runtime for PySpark (the Spark engine's tests); without root (and without it) those tests skip.
java:
	@command -v java >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; } || \
		echo "note: java not installed (needs root); the Spark tests will be skipped"

# a test file per worker (module fixtures such as a trained model or a SparkSession stay within one worker)
test: lint typecheck browser java
	$(BIN)/pytest -q -n auto --dist loadfile

bench: install
	$(BIN)/python benchmarks/prepare.py
	$(BIN)/python benchmarks/encoder.py
	$(BIN)/python benchmarks/predict.py

clean:
	rm -rf $(VENV) demo-output .pytest_cache .ruff_cache .mypy_cache
