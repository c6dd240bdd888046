"""The runtime's own suite runs against artifact sets the toolkit exported (vae_export.workloads
.runtime_fixtures: flat, conv --dynamic-size, conditional, semi-supervised and a small diffusers
AutoencoderKL, with int8, fp16 and .ort variants, and each graph's PyTorch outputs in
golden.npz). It needs neither torch nor onnx: in a venv with only this package and pytest, point
it at exported sets:

    pytest runtime/tests --artifacts-root DIR        (or VAE_EXPORT_RUNTIME_ARTIFACTS=DIR)

Where the toolkit is importable (the project's own test run) and no root is given, the sets are
exported into a temporary directory first. Neither given nor exportable: the graph tests fail,
they never skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ENV = "VAE_EXPORT_RUNTIME_ARTIFACTS"
KINDS = ("flat", "conv", "cond", "m2", "kl")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--artifacts-root", default=None, help=f"exported artifact sets (else ${ENV})")


@pytest.fixture(scope="session")
def root(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = request.config.getoption("--artifacts-root") or os.environ.get(ENV)
    if given:
        return Path(given)
    try:
        from vae_export.workloads import runtime_fixtures
    except ImportError:
        pytest.fail(f"no exported artifact sets: pass --artifacts-root DIR or set ${ENV} (the toolkit, which "
                    "can export them, is not installed here)")
    # One export per test session, shared with the toolkit's tests that need the same sets.
    return runtime_fixtures(tmp_path_factory.getbasetemp() / "runtime-artifacts")


@pytest.fixture(scope="session")
def golden(root: Path):
    def load(kind: str) -> dict[str, np.ndarray]:
        with np.load(root / kind / "golden.npz") as data:
            return {k: data[k] for k in data.files}
    return load
