"""What the runtime costs an app: it imports nothing beyond the standard library, numpy and
onnxruntime, and nothing platform-specific (pte.py, the ExecuTorch backend, imports ExecuTorch
and torch only when a .pte is opened). (That it installs and passes alone, with torch,
onnx, scipy and scikit-learn absent, is the toolkit's tests/test_runtime_alone.py.)"""

from __future__ import annotations

import subprocess
import sys

MODULES = ("backends", "budget", "checks", "codec", "contract", "cpu", "errors", "graphs", "limits", "memory",
           "openvino_backend", "ort_openvino", "pte", "recommend", "sampling", "session", "tiling")


def test_imports_only_the_standard_library_numpy_and_onnxruntime():
    code = ("import sys, vae_export_runtime\n"
            f"for m in {MODULES!r}: __import__('vae_export_runtime.' + m)\n"
            "third = {m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names)\n"
            "print(sorted(m for m in third if not m.startswith(('_', 'vae_export_runtime'))))\n"
            "print('fcntl' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['numpy', 'onnxruntime']"
    assert out[1] == "False False"  # no fcntl (the runtime imports on Windows too), no torch


def test_the_package_imports_its_api_lazily():
    """`import vae_export_runtime` alone loads neither numpy nor onnxruntime (the toolkit's CLI
    reads the limits without them); the first use of the API loads them."""
    code = ("import sys, vae_export_runtime.limits\n"
            "print('numpy' in sys.modules, 'onnxruntime' in sys.modules)\n"
            "from vae_export_runtime import VAEDecoder\n"
            "print('onnxruntime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[:2] == ["False False", "True"]
