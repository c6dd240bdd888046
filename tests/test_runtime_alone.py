"""The runtime as an app installs it: its wheel, built from runtime/, in a fresh virtual
environment with nothing else (numpy and onnxruntime come with it, pytest to run its suite),
runs its own test suite there against artifact sets this toolkit exported."""

from __future__ import annotations

import pytest

from conftest import RUNTIME, run_checked

ABSENT = ("torch", "onnx", "scipy", "sklearn", "vae_export")


@pytest.mark.slow
def test_the_runtime_wheel_passes_its_suite_alone(alone_venv, runtime_sets, tmp_path):
    python = alone_venv
    found = run_checked([str(python), "-c", "import importlib.util, vae_export_runtime; "
                  f"print([p for p in {ABSENT!r} if importlib.util.find_spec(p)]); print(vae_export_runtime.__file__)"],
                 tmp_path).stdout.splitlines()
    assert found[0] == "[]"  # torch, onnx, scipy, scikit-learn, the toolkit: none is installed
    assert "/venv/lib/" in found[1]  # the installed wheel, not this checkout's source
    result = run_checked([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(RUNTIME),
                          str(RUNTIME / "tests"), "--artifacts-root", str(runtime_sets)], tmp_path)
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
