# Set-up is part of every target: the first run makes .venv and installs requirements.txt into it.
VENV ?= .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: repro test benchmark

repro: $(VENV)/installed
	dvc repro

test: $(VENV)/installed
	python -m pytest

$(VENV)/installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@
