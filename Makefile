# Two commands that work on a fresh machine (Python 3.10+, a C++ compiler):
#   make demo   creates .venv, installs gputrack, runs the main job (on the shared street video,
#               else the synthetic world)
#   make test   creates/updates .venv with the test extras and runs the test suite
# On a machine with an NVIDIA GPU: make demo EXTRAS=cuda  (CuPy + NVRTC from PyPI)
PYTHON ?= python3
VENV ?= .venv
EXTRAS ?=
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q

.PHONY: demo test lint check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# One stamp per set of extras, so `make test` after `make demo` adds what the tests need.
$(VENV)/.installed$(EXTRAS): pyproject.toml | $(BIN)/python
	$(PIP) -e '.$(if $(EXTRAS),[$(EXTRAS)])'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(PIP) -e '.[dev]'
	touch $@

# The main job: live tracking on the real street video of the shared data where it is there
# (detector: FastestDet through gputrack's kernels), else on the synthetic world.
DATA ?= $(or $(GPUTRACK_DATA),../shared/data)
DEMO_SOURCE ?= $(or $(wildcard $(DATA)/video/vtest.avi),synthetic)

demo: $(VENV)/.installed$(EXTRAS)
	mkdir -p out
	$(BIN)/gputrack run $(DEMO_SOURCE) --frames 300 --log out/tracks.jsonl --mot out/tracks.txt --image out/last.png

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q
	$(BIN)/ruff check .

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

check: $(VENV)/.installed$(EXTRAS)
	$(BIN)/gputrack check

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
