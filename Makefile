# Set-up is part of every target: the first run makes .venv and installs requirements.txt into it.
# PYTHON is the interpreter that makes .venv; it must be Python 3.11 to 3.13 (see requirements.txt).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro test lint benchmark

# dvc repro, then the README's results block from the report it wrote (python -m fraudflow.readme)
repro: $(VENV)/installed
	dvc repro
	python -m fraudflow.readme

test: $(VENV)/installed
	python -m pytest

# ruff's lint rules and formatter, as pyproject.toml sets them; `ruff format .` and `ruff check --fix .` fix most.
lint: $(VENV)/installed
	ruff check .
	ruff format --check .

# Check the interpreter before making .venv: cheap, and only when .venv is (re)made. "+" runs the check
# under make -n too, so `make -n repro PYTHON=python3.11` tries an interpreter without making anything.
$(VENV)/installed: requirements.txt
	+@found=$$($(PYTHON) --version 2>/dev/null); case "$$found" in "Python 3.1"[123].*) ;; *) echo \
	"$${found:-no Python} found ($(PYTHON)), but fraudflow needs Python 3.11 to 3.13: make $(or $(MAKECMDGOALS),repro) PYTHON=python3.11" \
	>&2; exit 1;; esac
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@
