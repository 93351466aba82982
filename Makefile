# Two commands set up a fresh machine (see README):
#   make view   - create .venv, install trigan, open the viewer on the demo model
#   make test   - create .venv, install trigan with test tools, run the whole test suite
# TORCH_SPEC picks the torch build installed first (the CPU wheel by default, so pip never pulls
# the CUDA packages on its own); e.g. make test TORCH_SPEC="torch==2.13.0 --index-url URL-of-a-CUDA-index"

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: install view test lint test-portability bench gpu-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet $(TORCH_SPEC)
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The desktop viewer on the bundled demo model (needs a display; on a headless machine:
# xvfb-run -a make view, or see docs/viewer.md).
view: install
	$(BIN)/trigan view

# The linter first (seconds), then the suite: the GUI tests and the rest in two pytest processes at
# once (tests/run_suite.py; about 15 minutes on 2 cores, against 21 in one process).
test: install
	$(BIN)/ruff check .
	$(BIN)/python tests/run_suite.py

lint: install
	$(BIN)/ruff check .

# The suite once per set of other CPU kernel choices (tests/portability/run.py; about 20 minutes):
# catches tests that compare floats bit for bit where other machines compute them differently.
# Pass pytest arguments with ARGS, e.g. make test-portability ARGS='-- -m "not gui"'.
test-portability: install
	$(BIN)/python tests/portability/run.py $(ARGS)

bench: install
	$(BIN)/python benchmarks/render.py
	$(BIN)/python benchmarks/train.py

# Every CUDA path on this machine's GPU (parity with the CPU, GL preview, render and training speed
# and memory, torchrun with NCCL, a 256^3 mesh) in one JSON object, under 8 minutes; without CUDA
# it says so in one line. Install a CUDA build of torch first (TORCH_SPEC, above). ARGS='--quick'.
gpu-check: install
	$(BIN)/python benchmarks/gpu_check.py $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
