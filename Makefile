# make run: set up .venv, then run the pipeline (dvc repro) on params.yaml's defaults.
# make test: set up .venv, then the developer suite (every end-to-end path once; tests marked full skipped).
# make test-all: everything, full tests included (what CI runs); make test-quick: no slow tests.
# make ui: MLflow UI + TensorBoard on 127.0.0.1; make bench: the performance tables (docs/performance.md).
# make sweep: run every lesson as a DVC experiment and print the results table (docs/lessons.md).
# make lock: re-pin requirements.lock; make check-lock: does it resolve on the public index?
SUPPORTED_PYTHONS := 3.13 3.12 3.11
# Exits 0 only under a supported interpreter.
IS_SUPPORTED := -c 'import sys; sys.exit("%d.%d" % sys.version_info[:2] not in "$(SUPPORTED_PYTHONS)".split())'
# Your own python3 when it is a supported one, else the newest supported interpreter on PATH;
# PYTHON=/path/to/python3.X picks another. Each candidate is run, not only looked up: a pyenv
# shim exists even where its version is not installed or active.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3 $(addprefix python,$(SUPPORTED_PYTHONS)),\
  $(shell $(p) $(IS_SUPPORTED) >/dev/null 2>&1 && echo $(p))))
endif
comma := ,
space := $() $()
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
# make test and test-all run the suite in this many pytest-xdist processes, each test file in one
# of them (its module fixtures made once). Three on two cores: most tests wait on their dvc, MLflow
# or torchrun children, and a third worker keeps both cores busy meanwhile. The files go out in
# tests/conftest.py's order (the longest first, by tests/durations.json), not pytest-xdist's.
TEST_WORKERS ?= 3
PARALLEL = -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# Every optional extra of pyproject.toml (dev, and any added later), read when the recipe runs: all are
# installed, and `make lock` pins them all.
EXTRAS = $$($(BIN)/python -c 'import tomllib; \
  print(",".join(tomllib.load(open("pyproject.toml", "rb"))["project"].get("optional-dependencies", {})))')

.PHONY: setup git-identity run test test-all test-quick sweep ui bench lint format lock check-lock clean

setup: $(STAMP)

# --use-pep517: a package published only as a setup.py source (antlr4-python3-runtime) is built
# as a wheel, without pip's "legacy setup.py install" deprecation warning on older pips.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) $(IS_SUPPORTED) 2>/dev/null || { \
	echo "make: torchtrack needs Python $(subst $(space),$(comma) ,$(SUPPORTED_PYTHONS)): $(if $(PYTHON),$(PYTHON) \
	is none of them,none of them is on PATH as python3.X or python3). Install one, or name it: \
	make PYTHON=/path/to/python3.12" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --use-pep517 -r requirements.lock -e ".[$(EXTRAS)]"
	touch $@

run: setup git-identity
	dvc repro

# A note, not a stop: `dvc exp run` commits each experiment with git, which needs a name and email
# set (useConfigOnly: one git would guess from the host name does not count).
IDENT := git -c user.useConfigOnly=true var
git-identity:
	@$(IDENT) GIT_AUTHOR_IDENT >/dev/null 2>&1 && $(IDENT) GIT_COMMITTER_IDENT >/dev/null 2>&1 || { \
	echo "make: git has no name and email yet, and dvc exp run commits with git; give it yours:" >&2; \
	echo '  git config --global user.name "Your Name" && git config --global user.email you@example.com' >&2; }

test: setup
	pytest -q -m "not full" $(PARALLEL)

test-all: setup
	pytest -q $(PARALLEL)

test-quick: setup
	pytest -q -m "not slow and not full"

sweep: setup  # prints the lessons table and writes it into docs/lessons.md
	python scripts/lessons.py | python scripts/docs_tables.py lessons

ui: setup
	torchtrack ui

bench: setup  # benchmarks the committed HEAD: writes benchmarks/results.json, then docs/performance.md
	python benchmarks/bench.py
	python scripts/docs_tables.py performance

lint: setup  # ruff, and the package's layers (pyproject.toml's [tool.importlinter])
	ruff check .
	ruff format --check .
	lint-imports

format: setup
	ruff check --fix .
	ruff format .

lock: setup  # a fresh resolve of pyproject.toml (base and every extra), public versions only
	python scripts/lock.py

check-lock: setup  # every line of requirements.lock resolves on the public index, for each supported Python
	python scripts/check_lock.py $(SUPPORTED_PYTHONS)

clean:
	rm -rf $(VENV) runs mlflow.db mlartifacts .pytest_cache
