# The two commands of the README (`make serve`, `make test`) plus lint and bench.
VENV    ?= .venv
PYTHON  ?= python3
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

.PHONY: install serve test lint format bench clean

# Reinstall only when pyproject.toml changed since the last install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(BIN)/bookchat serve

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy src

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	$(BIN)/pytest --cov=bookchat --cov-report=term --cov-fail-under=80

bench: $(STAMP)
	$(BIN)/python bench/retrieval.py
	$(BIN)/python bench/chat.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/startup.py

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov bench/results
