# Two commands that work on a fresh machine (Python 3.10+, a C++ compiler):
#   make demo   creates .venv, installs gputrack, runs the main job on its built-in default
#   make test   creates/updates .venv with the test extras and runs the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	mkdir -p out
	$(BIN)/gputrack demo --log out/demo_tracks.jsonl --image out/demo_last.png

test: $(STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .

check: $(STAMP)
	$(BIN)/gputrack check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
