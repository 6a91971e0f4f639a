# Two commands matter on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
UV_VERSION := 0.13.9
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_SYSTEM_CERTS := 1

HOST ?= 127.0.0.1
PORT ?= 8000
DATA_DIR ?= data
SEED_TRANSACTIONS ?= 20000

.PHONY: demo budget test fuzz lint typecheck fmt bench install clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(VENV)/.installed: pyproject.toml casebook/pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

install: $(VENV)/.installed

demo: install
	LOCKSTEP_LOG_FORMAT=$${LOCKSTEP_LOG_FORMAT:-console} $(BIN)/casebook serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR) --seed $(SEED_TRANSACTIONS)

# The tutorial's app (docs/tutorial.md): the household budget of examples/budget, on SQLite.
budget: install
	PYTHONPATH=examples/budget LOCKSTEP_LOG_FORMAT=$${LOCKSTEP_LOG_FORMAT:-console} $(BIN)/python -m budget serve --host $(HOST) --port $(PORT) --data-dir $(DATA_DIR)/budget

lint: install
	$(BIN)/ruff check src casebook/src tests bench examples
	$(BIN)/ruff format --check src casebook/src tests bench examples
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest

# Long runs: the differential cache harness (every cached route against its uncached
# answer), then schemathesis over the OpenAPI document as every role, FUZZ_EXAMPLES cases
# per operation and phase (docs/reliability.md has the figures).
FUZZ_STEPS ?= 3000
FUZZ_SEEDS ?= 1,2,3,4,5
FUZZ_EXAMPLES ?= 1000
fuzz: install
	CASEBOOK_FUZZ_STEPS=$(FUZZ_STEPS) CASEBOOK_FUZZ_SEEDS=$(FUZZ_SEEDS) $(BIN)/pytest -p no:randomly tests/casebook/test_differential.py
	CASEBOOK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -p no:randomly -s tests/casebook/test_fuzz.py

fmt: install
	$(BIN)/ruff format src casebook/src tests bench examples
	$(BIN)/ruff check --fix src casebook/src tests bench examples

bench: install
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .tools .mypy_cache .ruff_cache .pytest_cache
