# Two entry points (see README): `make run` and `make test`. Each makes its own virtual
# environment and installs torch first, then the project, so the torch pin is honoured
# (an unpinned torch would pull a multi-GB CUDA build).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: setup setup-gpu run test bench clean

$(BIN)/.installed: pyproject.toml runtime/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ./runtime -e ".[test,scale,peers,diffusers]"
	touch $@

setup: $(BIN)/.installed

# GPU: swap the CPU build of ONNX Runtime for onnxruntime-gpu (both install the module
# `onnxruntime`, so only one may be present). Use a CUDA build of torch via TORCH_SPEC.
setup-gpu: $(BIN)/.installed
	$(BIN)/python -m pip uninstall --quiet -y onnxruntime
	$(BIN)/python -m pip install --quiet onnxruntime-gpu

run: $(BIN)/.installed
	$(BIN)/vae-export run

test: $(BIN)/.installed
	$(BIN)/python -m pytest

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/bench_sweep.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
