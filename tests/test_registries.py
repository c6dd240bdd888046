"""Families and engines registered from outside the package (a `register` call, or an entry
point of an installed distribution) go through export, verify and bench without any module of
the package knowing them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from conftest import one_line_error
from vae_export import engines, families
from vae_export.artifacts import sha256_file
from vae_export.cli import main
from vae_export.engines import GRAPH, Engine, Runner, Target
from vae_export.families import Family, LoadedModel, LoadRequest
from vae_export.graphs import split

# ---- a family: a small VAE whose weights come as a numpy .npz archive ----------------------------


class NpzVAE(nn.Module):
    """A user's architecture the package has never seen: an MLP with a 6-value latent."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(64, 12)
        self.dec = nn.Linear(6, 64)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.enc(x.flatten(1))
        return h[:, :6], h[:, 6:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.dec(z)).reshape(-1, 1, 8, 8)


class NpzFamily(Family):
    name = "npz"
    likelihood = "gaussian"
    EDGE_ATOL = 2e-5

    def claims(self, request: LoadRequest) -> bool:
        return request.model_ref == "npz:mlp"

    def owns(self, source: str) -> bool:
        return source == "npz:mlp"

    def model_ref_for(self, source: str) -> str | None:
        return source  # rebuilt from the manifest alone: no user code is named

    def edge_atol(self, atol: float) -> float:
        return max(atol, self.EDGE_ATOL)

    def load(self, request: LoadRequest) -> LoadedModel:
        with np.load(request.checkpoint, allow_pickle=False) as data:  # arrays only: never a pickle
            state = {k: torch.from_numpy(data[k]) for k in data.files}
        module = NpzVAE()
        module.load_state_dict(state, strict=True)
        return split(module.eval(), (1, 8, 8), family=self, checkpoint=request.checkpoint,
                     checkpoint_sha256=sha256_file(request.checkpoint), source="npz:mlp",
                     config={"image_shape": [1, 8, 8], "format": "npz"}, dynamic_size=request.dynamic_size)


@pytest.fixture
def npz_family(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "weights.npz"
    np.savez(weights, **{k: v.numpy() for k, v in NpzVAE().state_dict().items()})
    families.register(NpzFamily())
    yield weights
    families.unregister("npz")


def test_a_family_registered_from_outside_exports_verifies_and_benches(npz_family, tmp_path, runner):
    out = tmp_path / "a"
    result = runner.invoke(main, ["export", "--model", "npz:mlp", "--checkpoint", str(npz_family),
                                  "--artifacts", str(out), "--variant", "int8"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["source"] == "npz:mlp" and manifest["model"]["latent_dim"] == 6
    meta = {p.key: p.value for p in onnx.load(str(out / "decoder.onnx")).metadata_props}
    assert meta["vae_export.likelihood"] == "gaussian" and meta["vae_export.source"] == "npz:mlp"
    # verify and bench rebuild it from the manifest (the family says how), no --model needed
    report = tmp_path / "v.json"
    result = runner.invoke(main, ["verify", "--artifacts", str(out), "--batch-sizes", "1,3", "--json", str(report)])
    assert result.exit_code == 0, result.output
    checks = json.loads(report.read_text())["checks"]
    assert {(c["graph"], c["variant"]) for c in checks} >= {("decoder", "fp32"), ("encoder", "int8")}
    edge = [c for c in checks if c["input"] == "edge" and c["variant"] == "fp32"]
    assert edge and all(c["atol"] == NpzFamily.EDGE_ATOL for c in edge)  # the family's tolerance, asked
    result = runner.invoke(main, ["bench", "--artifacts", str(out), "--batch-sizes", "2", "--warmup", "1",
                                  "--iterations", "3", "--no-peers", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert {(r["graph"], r["engine"]) for r in rows} >= {("decoder", "onnxruntime"), ("decoder", "torch")}


def test_without_the_family_its_artifacts_are_a_user_class(npz_family, tmp_path, runner):
    out = tmp_path / "a"
    assert runner.invoke(main, ["export", "--model", "npz:mlp", "--checkpoint", str(npz_family),
                                "--artifacts", str(out)]).exit_code == 0
    families.unregister("npz")
    result = runner.invoke(main, ["verify", "--artifacts", str(out)])
    assert result.exit_code == 2
    one_line_error(result, "the graphs come from a user class (npz:mlp)", "--model MODULE:ATTR")


# ---- an engine: ONNX's own reference evaluator ---------------------------------------------------


class ReferenceRunner(Runner):
    engine = "onnx-reference"
    provider = "python"

    def __init__(self, target: Target) -> None:
        from onnx.reference import ReferenceEvaluator

        self.spec = target.spec
        self.evaluator = ReferenceEvaluator(str(target.path))

    def run(self, feeds):
        return [np.asarray(v) for v in self.evaluator.run(list(self.spec.output_names), dict(feeds))]

    def timed_call(self, feeds):
        bound = dict(feeds)
        return lambda: self.evaluator.run(None, bound)


class ReferenceEngine(Engine):
    """onnx.reference.ReferenceEvaluator: ONNX's pure-Python implementation of the operators."""

    name = "onnx-reference"
    kind = GRAPH
    package = "onnx"

    def accepts(self, variant: str, path: Path) -> bool:
        return variant == "fp32" and path.suffix == ".onnx"

    def open(self, target: Target, device: str = "cpu", threads: int | None = None) -> Runner:
        return ReferenceRunner(target)


@pytest.fixture
def reference_engine():
    engines.register(ReferenceEngine())
    yield
    engines.unregister("onnx-reference")


def test_an_engine_registered_from_outside_appears_in_verify_and_bench(reference_engine, artifacts, runner,
                                                                        tmp_path):
    report = tmp_path / "v.json"
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--engine", "onnx-reference",
                                  "--batch-sizes", "1,2", "--json", str(report)])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["engines"] == ["onnx-reference"] and data["passed"] is True
    assert data["checks"] and {c["engine"] for c in data["checks"]} == {"onnx-reference"}
    assert max(c["max_abs"] for c in data["checks"]) < 1e-4  # a real comparison against PyTorch
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--engine", "onnx-reference",
                                  "--engine", "onnxruntime", "--batch-sizes", "1", "--warmup", "1", "--iterations", "3",
                                  "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    rows = json.loads((tmp_path / "b.json").read_text())["results"]
    assert {r["engine"] for r in rows} == {"onnx-reference", "onnxruntime"}
    assert {r["provider"] for r in rows if r["engine"] == "onnx-reference"} == {"python"}


def test_an_engine_from_an_installed_distribution_entry_point(tmp_path, monkeypatch):
    """The entry point group `vae_export.engines`, as an installed plugin declares it."""
    (tmp_path / "vae_ref_plugin.py").write_text(
        "from vae_export.engines import Engine\n"
        "class PluginEngine(Engine):\n    name = 'plugin-engine'\n")
    dist = tmp_path / "vae_ref_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: vae-ref-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[vae_export.engines]\nplugin = vae_ref_plugin:PluginEngine\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(engines._REGISTRY, "_loaded_plugins", False)
    try:
        assert engines.get("plugin-engine").name == "plugin-engine"
    finally:
        engines.unregister("plugin-engine")
        sys.modules.pop("vae_ref_plugin", None)


@pytest.mark.parametrize("args, fragments", [
    (["verify", "--engine", "nope"], ["--engine 'nope': expected one of", "onnxruntime"]),
    (["bench", "--engine", "nope"], ["--engine 'nope': expected one of", "onnxruntime"]),
    (["verify", "--engine", "torch"], ["--engine torch: verify checks engines that run the exported graphs"]),
])
def test_unknown_or_unfit_engine_is_a_usage_error(artifacts, runner, args, fragments):
    result = runner.invoke(main, [*args, "--artifacts", str(artifacts)])
    assert result.exit_code == 2
    one_line_error(result, *fragments)


def test_an_engine_whose_package_is_missing(artifacts, runner):
    class Missing(ReferenceEngine):
        name = "needs-missing"
        package = "no_such_package_for_vae_export"
        install_hint = "pip install no-such-package"

    engines.register(Missing())
    try:
        result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--engine", "needs-missing"])
    finally:
        engines.unregister("needs-missing")
    assert result.exit_code == 2
    one_line_error(result, "engine needs-missing needs the no_such_package_for_vae_export package",
                   "pip install no-such-package")
