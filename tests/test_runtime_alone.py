"""The runtime as an app installs it: its wheel, built from runtime/, in a fresh virtual
environment with nothing else (numpy and onnxruntime come with it, pytest to run its suite),
runs its own test suite there against artifact sets this toolkit exported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vae_export.workloads import runtime_fixtures

RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
ABSENT = ("torch", "onnx", "scipy", "sklearn", "vae_export")


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def alone_venv(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("runtime-alone")
    # Built from a clean copy: setuptools' in-tree build/ could carry modules deleted since.
    source = shutil.copytree(RUNTIME, work / "source", ignore=shutil.ignore_patterns("build", "*.egg-info", "tests",
                                                                                     "__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source)], work)
    (wheel,) = (work / "dist").glob("vae_export_runtime-*.whl")
    _run([sys.executable, "-m", "venv", str(work / "venv")], work)
    python = work / "venv" / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), "pytest"], work)
    return python


@pytest.mark.slow
def test_the_runtime_wheel_passes_its_suite_alone(alone_venv, tmp_path_factory, tmp_path):
    python = alone_venv
    found = _run([str(python), "-c", "import importlib.util, vae_export_runtime; "
                  f"print([p for p in {ABSENT!r} if importlib.util.find_spec(p)]); print(vae_export_runtime.__file__)"],
                 tmp_path).stdout.splitlines()
    assert found[0] == "[]"  # torch, onnx, scipy, scikit-learn, the toolkit: none is installed
    assert "/venv/lib/" in found[1]  # the installed wheel, not this checkout's source
    root = runtime_fixtures(tmp_path_factory.getbasetemp() / "runtime-artifacts")
    result = _run([str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(RUNTIME),
                   str(RUNTIME / "tests"), "--artifacts-root", str(root)], tmp_path)
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "failed" not in summary and "skipped" not in summary, summary
