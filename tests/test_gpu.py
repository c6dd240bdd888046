"""CUDA paths. They run where ONNX Runtime has the CUDA execution provider (onnxruntime-gpu)
and skip with the reason elsewhere; the usage error without it is tested everywhere."""

import json

import onnxruntime as ort
import pytest
import torch

from vae_export.cli import main

HAS_CUDA_EP = "CUDAExecutionProvider" in ort.get_available_providers()
needs_cuda = pytest.mark.skipif(
    not (HAS_CUDA_EP and torch.cuda.is_available()),
    reason="no CUDA: needs onnxruntime-gpu with the CUDA execution provider and a CUDA build of torch",
)


@pytest.mark.skipif(HAS_CUDA_EP, reason="the CUDA execution provider is installed here")
@pytest.mark.parametrize("command", ["verify", "bench"])
def test_cuda_without_provider_is_usage_error(artifacts, runner, command):
    result = runner.invoke(main, [command, "--artifacts", str(artifacts), "--device", "cuda"])
    assert result.exit_code == 2
    assert "--device cuda: ONNX Runtime has no CUDA execution provider" in result.stderr
    assert "pip install onnxruntime-gpu" in result.stderr


@needs_cuda
def test_verify_on_cuda(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--device", "cuda",
                                  "--atol", "1e-4", "--rtol", "1e-3", "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "v.json").read_text())["device"] == "cuda"


@needs_cuda
def test_bench_on_cuda(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--device", "cuda", "--batch-sizes", "1,64",
                                  "--iterations", "20", "--warmup", "5", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "b.json").read_text())
    assert {r["provider"] for r in report["results"]} == {"CUDAExecutionProvider", "cuda"}
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in report["results"])
    assert report["env"]["gpu"]
