# make run: set up .venv, then run the pipeline (dvc repro) on params.yaml's defaults.
# make test: set up .venv, then run the whole test suite (make test-quick skips the slow ones).
# make ui: MLflow UI + TensorBoard on 127.0.0.1; make bench: the performance table.
# make sweep: run every lesson as a DVC experiment and print the results table (see README).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test test-quick sweep ui bench lint format lock clean

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

run: setup
	dvc repro

test: setup
	pytest -q

test-quick: setup
	pytest -q -m "not slow"

sweep: setup
	python scripts/lessons.py

ui: setup
	torchtrack ui

bench: setup  # benchmarks the committed HEAD: prints the targets table, writes benchmarks/results.json
	python benchmarks/bench.py

lint: setup
	ruff check .
	ruff format --check .

format: setup
	ruff check --fix .
	ruff format .

lock: setup
	{ echo "# Exact versions of every package, transitive ones included; regenerate with \`make lock\`."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torchtrack'; } > requirements.lock

clean:
	rm -rf $(VENV) runs mlflow.db mlartifacts .pytest_cache
