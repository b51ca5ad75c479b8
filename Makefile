# The two commands: `make run` serves paylambda locally, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install run test lint bench

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-bitpay8.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade --target $(VENV)/bitpay8 -r requirements-bitpay8.txt
	touch $@

install: $(BIN)/.installed

run: install
	$(BIN)/python scripts/run_local.py

test: install
	sh scripts/install_chromium.sh
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	for script in bench/*.py; do PYTHONPATH=. $(BIN)/python $$script || exit 1; done
