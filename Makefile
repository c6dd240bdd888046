# Two entry points (see README): `make run` and `make test`. Each makes the virtual environment
# its job needs in .venv, installing torch first, then the runtime (runtime/), then the project,
# so the torch pin is honoured (an unpinned torch would pull a multi-GB CUDA build).
# `make run` installs the core only; `make test` adds every extra the suite exercises.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TEST_EXTRAS ?= test,scale,peers,diffusers,executorch
BIN = $(VENV)/bin
# setuptools warns on every editable install that a folder named like the package may shadow
# it (here it is the package): noise the user cannot act on, so it is filtered by its message.
PIP = PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet --disable-pip-version-check

.PHONY: setup setup-gpu run test bench clean

$(BIN)/.core: pyproject.toml runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e ./runtime -e .
	touch $@

$(BIN)/.full: $(BIN)/.core
	$(PIP) -e ./runtime -e ".[$(TEST_EXTRAS)]"
	touch $@

setup: $(BIN)/.full

# GPU: swap the CPU build of ONNX Runtime for onnxruntime-gpu (both install the module
# `onnxruntime`, so only one may be present). Use a CUDA build of torch via TORCH_SPEC.
setup-gpu: $(BIN)/.core
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(PIP) onnxruntime-gpu

run: $(BIN)/.core
	$(BIN)/vae-export run

test: $(BIN)/.full
	$(BIN)/python -m pytest

bench: $(BIN)/.full
	$(BIN)/python benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) build *.egg-info runtime/build runtime/*.egg-info .pytest_cache
