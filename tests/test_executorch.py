"""ExecuTorch (.pte) end to end, with real torch and executorch (no mocks of either): export
--variant executorch / executorch-int8, the manifest's records, verify and bench on the
executorch engine, the runtime's API on .pte files, and the bad inputs of issue 27 (a batch
and a size beyond the exported bounds, truncated and tampered files, a model whose op does not
lower). Small models only (an MLP and a narrow conv model, one epoch each): the lowering is
what takes the time.

Needs `pip install 'vae-export[executorch]'`; skipped as a whole without it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import one_line_error
from vae_export.cli import main
from vae_export.training import TrainConfig

pytest.importorskip("executorch")

from vae_export_runtime import RuntimeInputError, VAE, VAEDecoder, VAEEncoder  # noqa: E402
from vae_export_runtime import pte  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore")
ET = ("executorch", "executorch-int8")


def _export(tmp_path_factory, name: str, model, variants=ET, dynamic_size=False, calibration=None) -> Path:
    from vae_export.export import export
    from vae_export.families import load_model
    from vae_export.families.reference import save_checkpoint

    d = tmp_path_factory.mktemp(name)
    save_checkpoint(model, d / "vae.safetensors")
    result = export(load_model(d / "vae.safetensors", dynamic_size=dynamic_size), d, variants=variants,
                    calibration=calibration)
    assert not result.failed, result.failed
    return d


@pytest.fixture(scope="session")
def mlp_et(tmp_path_factory, digits) -> Path:
    """Read-only: the reference MLP (narrower, one epoch) with its fp32 ONNX graphs and both .pte
    variants."""
    from vae_export.model import VAEConfig
    from vae_export.train import train

    model = train(digits, VAEConfig(hidden_dim=128), TrainConfig(epochs=1, seed=0)).model
    return _export(tmp_path_factory, "mlp-et", model, calibration=digits.train.numpy())


CONV_BOUNDS = (32, 16)  # a batch bound above 15 on purpose: torch's conv guard would narrow it to 15


@pytest.fixture(scope="session")
def conv_et(tmp_path_factory, digits) -> Path:
    """Read-only: a narrow conv model exported with --dynamic-size and the executorch variant,
    its bounds asked of the family (patched here to small ones: batch 32, latent side 16)."""
    from vae_export.families.reference import ReferenceFamily
    from vae_export.lowering import PteBounds
    from vae_export.model import VAEConfig
    from vae_export.train import train

    model = train(digits, VAEConfig(arch="conv", channels=8), TrainConfig(epochs=1, seed=0)).model
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ReferenceFamily, "pte_bounds", lambda self, loaded: PteBounds(*CONV_BOUNDS))
        return _export(tmp_path_factory, "conv-et", model, variants=("executorch",), dynamic_size=True)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _z(batch: int, shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, *shape)).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


# ---- export and the manifest ----------------------------------------------------------------------

def test_export_writes_pte_files_the_manifest_records(mlp_et):
    from vae_export.manifest import Manifest
    from vae_export_runtime.codec import GraphMetadata
    from vae_export_runtime.contract import graph_filename

    assert [graph_filename("decoder", v) for v in ("fp32", *ET)] == ["decoder.onnx", "decoder.pte", "decoder.int8.pte"]
    manifest = Manifest.read(mlp_et)  # validated, bounds included
    data = json.loads((mlp_et / "manifest.json").read_text())
    assert "executorch" in data["versions"]
    entries = {e.file: e for e in manifest.artifacts}
    assert set(entries) == {"encoder.onnx", "decoder.onnx", "encoder.pte", "decoder.pte", "encoder.int8.pte",
                            "decoder.int8.pte"}
    decoder = entries["decoder.pte"]
    raw = (mlp_et / "decoder.pte").read_bytes()
    assert decoder.sha256 == hashlib.sha256(raw).hexdigest() and decoder.bytes == len(raw) and decoder.opset is None
    assert decoder.variant == "executorch" and decoder.graph == "decoder"
    assert decoder.bounds == {"z": [64, 32], "x_hat": [64, 1, 28, 28]}
    assert decoder.inputs == entries["decoder.onnx"].inputs and decoder.outputs == entries["decoder.onnx"].outputs
    assert entries["encoder.pte"].bounds == {"x": [64, 1, 28, 28], "mu": [64, 32], "logvar": [64, 32]}
    assert decoder.executorch == {"planned_bytes": pytest.approx(4 * 64 * (32 + 784), rel=0.01), "undelegated_ops": []}
    assert entries["decoder.int8.pte"].bytes < 0.35 * decoder.bytes
    # The file describes itself: the .onnx graph's metadata, through the codec, plus the names.
    program = pte.PteProgram(mlp_et / "decoder.pte", expected_sha256=decoder.sha256)
    meta = GraphMetadata.from_props(program.metadata, "decoder.pte")
    import onnx

    onnx_meta = {p.key: p.value for p in onnx.load(str(mlp_et / "decoder.onnx")).metadata_props}
    fp32 = GraphMetadata.from_props(onnx_meta, "decoder.onnx")
    assert (meta.role, meta.latent_shape, meta.image_shape, meta.checkpoint_sha256) == \
        (fp32.role, fp32.latent_shape, fp32.image_shape, fp32.checkpoint_sha256)
    assert meta.variant == "executorch" and meta.exporter.startswith("executorch ") and meta.opset == ""
    assert program.input_names == ("z",) and program.output_names == ("x_hat",)
    assert program.inputs[0].bounds == (64, 32) and program.max_batch == 64


def test_inspect_shows_a_pte_with_its_bounds(mlp_et, runner):
    result = runner.invoke(main, ["inspect", str(mlp_et / "decoder.pte")])
    assert result.exit_code == 0, result.output
    assert "ExecuTorch program" in result.output
    assert "z        float    [batch, 32]  bounds [64, 32]" in result.output
    assert "meta   vae_export.role = decoder" in result.output


def test_manifest_bounds_are_validated(mlp_et, tmp_path):
    from vae_export.errors import VAEExportError
    from vae_export.manifest import Manifest

    d = _copy(mlp_et, tmp_path / "m")
    data = json.loads((d / "manifest.json").read_text())
    entry = next(e for e in data["artifacts"] if e["file"] == "decoder.pte")
    for bad, fragment in (({"z": [64, 32]}, "the largest shape of each of z, x_hat"),
                          ({"z": [64, 31], "x_hat": [64, 1, 28, 28]}, "the fixed sizes of the signature"),
                          ({"z": [64], "x_hat": [64, 1, 28, 28]}, "a list of 2 positive integers")):
        entry["bounds"] = bad
        (d / "manifest.json").write_text(json.dumps(data))
        with pytest.raises(VAEExportError, match=fragment):
            Manifest.read(d)


# ---- verify and bench on the executorch engine ----------------------------------------------------

def test_verify_checks_every_pte_against_pytorch(mlp_et, tmp_path, runner):
    """Each file on the engine that runs it; batch 65 is beyond the .pte bound (64): the engine
    splits it. fp32 passes on atol/rtol, int8 on decoder PSNR and the mu bound."""
    d = _copy(mlp_et, tmp_path / "v")
    result = runner.invoke(main, ["verify", "--artifacts", str(d), "--batch-sizes", "1,65", "--json",
                                  str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "v.json").read_text())
    rows = [c for c in report["checks"] if c["file"].endswith(".pte")]
    assert {c["engine"] for c in rows} == {"executorch"} and "engines" not in report
    assert {(c["variant"], c["batch"]) for c in rows if c["input"] != "edge"} == {(v, b) for v in ET for b in (1, 65)}
    for c in rows:
        if c["variant"] == "executorch":
            assert c["gated_on"] == "atol/rtol" and c["max_abs"] < 1e-5
        elif c["graph"] == "decoder":
            assert c["gated_on"] == "psnr" and c["psnr_db"] >= 30.0
        elif c["output"] == "mu":  # the registry's bounds: atol 0.25 (0.5 on the all-0/all-1 images)
            assert c["gated_on"] == "atol/rtol" and c["atol"] == (0.5 if c["input"] == "edge" else 0.25)
    assert all(c["passed"] for c in report["checks"])
    # --engine onnxruntime checks the ONNX graphs only
    result = runner.invoke(main, ["verify", "--artifacts", str(d), "--batch-sizes", "1", "--engine", "onnxruntime",
                                  "--json", str(tmp_path / "o.json")])
    assert result.exit_code == 0, result.output
    assert {c["file"] for c in json.loads((tmp_path / "o.json").read_text())["checks"]} == {"encoder.onnx",
                                                                                            "decoder.onnx"}


def test_bench_times_executorch_onnxruntime_and_torch_in_one_run(mlp_et, tmp_path, runner):
    d = _copy(mlp_et, tmp_path / "b")
    result = runner.invoke(main, ["bench", "--artifacts", str(d), "--engine", "executorch", "--engine", "onnxruntime",
                                  "--engine", "torch", "--batch-sizes", "1,65", "--warmup", "1", "--iterations", "3",
                                  "--rounds", "1", "--json", str(tmp_path / "b.json")])
    assert result.exit_code == 0, result.output
    bench = json.loads((tmp_path / "b.json").read_text())
    rows = {(r["graph"], r["engine"], r["variant"], r["batch"]) for r in bench["results"]}
    for graph in ("encoder", "decoder"):
        for batch in (1, 65):
            assert {(graph, "executorch", v, batch) for v in ET} <= rows
            assert (graph, "onnxruntime", "fp32", batch) in rows and (graph, "torch", "fp32", batch) in rows
    assert {r["provider"] for r in bench["results"] if r["engine"] == "executorch"} == {"XNNPACK"}
    assert bench["env"]["executorch"].startswith("1.5")


# ---- the runtime --------------------------------------------------------------------------------

def test_runtime_opens_pte_with_the_same_api(mlp_et):
    """A .pte path picks ExecuTorch (no engine=): same images, encodings and scores as the .onnx."""
    onnx_decoder, pte_decoder = VAEDecoder(mlp_et / "decoder.onnx"), VAEDecoder(mlp_et / "decoder.pte")
    assert (onnx_decoder.engine, pte_decoder.engine) == ("onnxruntime", "executorch")
    assert pte_decoder.latent_shape == (32,) and pte_decoder.image_shape == (1, 28, 28)
    assert pte_decoder.metadata["variant"] == "executorch"
    # 100 rows: beyond the program's batch bound (64), run in two calls
    np.testing.assert_allclose(pte_decoder.sample(100, seed=3), onnx_decoder.sample(100, seed=3), atol=1e-5)
    ref, vae = VAE.open(mlp_et), VAE.open(mlp_et, variant="executorch")
    assert vae.encoder.path.name == "encoder.pte" and vae.encoder.engine == "executorch"
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    for got, want in zip(vae.encoder.encode(x), ref.encoder.encode(x)):
        np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(vae.anomaly_score(x, seed=1), ref.anomaly_score(x, seed=1), rtol=1e-4)
    int8 = VAE.open(mlp_et, variant="executorch-int8")
    assert int8.decoder.path.name == "decoder.int8.pte"
    assert _psnr(int8.decoder.sample(64, seed=0), onnx_decoder.sample(64, seed=0)) >= 30.0


def test_runtime_without_executorch_says_how_to_install_it(mlp_et, monkeypatch):
    monkeypatch.setattr(pte, "installed", lambda: False)
    with pytest.raises(RuntimeInputError, match=r"decoder.pte: an ExecuTorch program; opening it needs ExecuTorch: "
                                                 r"pip install executorch"):
        VAEDecoder(mlp_et / "decoder.pte")
    with pytest.raises(RuntimeInputError, match="runs decoder.pte on the CPU"):
        VAEDecoder(mlp_et / "decoder.pte", providers=["CUDAExecutionProvider"])


def test_export_without_executorch_is_a_usage_error(mlp_et, tmp_path, runner, monkeypatch):
    import importlib.util

    shutil.copy(mlp_et / "vae.safetensors", tmp_path / "vae.safetensors")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "executorch" else find_spec(name, *a))
    result = runner.invoke(main, ["export", "--artifacts", str(tmp_path), "--variant", "executorch"])
    assert result.exit_code == 2
    one_line_error(result, "--variant executorch needs the executorch package", "pip install 'vae-export[executorch]'")
    assert not (tmp_path / "manifest.json").exists()


def test_conditional_graphs_take_y_second(tmp_path, digits):
    """Lowered directly (no ONNX export): the runtime's conditional API against PyTorch."""
    from vae_export.families import load_model
    from vae_export.families.reference import save_checkpoint
    from vae_export.inputs import label_rows
    from vae_export.lowering import lower_graph
    from vae_export.model import VAEConfig
    from vae_export.train import train

    config = VAEConfig(num_classes=10, class_names=digits.class_names, hidden_dim=64)
    save_checkpoint(train(digits, config, TrainConfig(epochs=1, seed=0)).model, tmp_path / "vae.safetensors")
    loaded = load_model(tmp_path / "vae.safetensors")
    for spec in loaded.geometry.specs():
        (tmp_path / f"{spec.role}.pte").write_bytes(lower_graph(loaded, spec, "executorch").data)
    program = pte.PteProgram(tmp_path / "decoder.pte")
    assert program.input_names == ("z", "y") and program.metadata["vae_export.num_classes"] == "10"
    vae = VAE.open(tmp_path, variant="executorch")
    assert vae.num_classes == 10 and vae.decoder.class_names == tuple(digits.class_names)
    z, y = _z(7, (32,)), label_rows(7, 10)
    with torch.no_grad():
        x_hat = loaded.decoder(torch.from_numpy(z), torch.from_numpy(y)).numpy()
        x = digits.test.numpy()[:7]
        mu = loaded.encoder(torch.from_numpy(x), torch.from_numpy(y))[0].numpy()
    np.testing.assert_allclose(vae.decoder.decode(z, y=y), x_hat, atol=1e-5)
    np.testing.assert_allclose(vae.encoder.encode(x, y=y)[0], mu, atol=1e-5)


# ---- conv --dynamic-size: two sizes, and the bounds the family asks for --------------------------------

def test_conv_pte_bounds_come_from_the_family_and_verify_at_the_default_sizes(conv_et, tmp_path, runner):
    from vae_export.manifest import Manifest

    entries = {e.file: e for e in Manifest.read(conv_et).artifacts}
    batch, side = CONV_BOUNDS
    assert entries["decoder.pte"].bounds == {"z": [batch, 4, side, side], "x_hat": [batch, 1, 4 * side, 4 * side]}
    assert entries["encoder.pte"].bounds["x"] == [batch, 1, 4 * side, 4 * side]
    d = _copy(conv_et, tmp_path / "c")
    # 28x28, 56x56, 32x48 (the default sizes) are within the bounds; 68x68 (latent 17) is not:
    # the .pte files are checked at the first three, the .onnx at all four. Batch 33 is split.
    result = runner.invoke(main, ["verify", "--artifacts", str(d), "--batch-sizes", "1,33", "--sizes",
                                  "28x28,56x56,32x48,68x68", "--json", str(tmp_path / "v.json")])
    assert result.exit_code == 0, result.output
    checks = json.loads((tmp_path / "v.json").read_text())["checks"]
    sizes = {c["file"]: set() for c in checks}
    for c in checks:
        sizes[c["file"]].add(tuple(c["size"]))
    assert sizes["decoder.pte"] == sizes["encoder.pte"] == {(28, 28), (56, 56), (32, 48)}
    assert (68, 68) in sizes["decoder.onnx"]
    assert max(c["max_abs"] for c in checks if c["file"].endswith(".pte")) < 1e-5


def test_size_beyond_the_bound_is_refused(conv_et):
    decoder, encoder = VAEDecoder(conv_et / "decoder.pte"), VAEEncoder(conv_et / "encoder.pte")
    assert decoder.latent_shape == (4, None, None) and decoder.default_size == (28, 28)
    with pytest.raises(RuntimeInputError, match=r"z: size 17 on axis 2 is outside this program's exported bound "
                                                 r"1\.\.16 .*decode\(z, tile=16\)"):
        decoder.decode(_z(1, (4, 17, 8)))
    with pytest.raises(RuntimeInputError, match=r"x: size 68 on axis 3 is outside"):
        encoder.encode(np.zeros((1, 1, 28, 68), np.float32))
    # ExecuTorch alone counts elements, not dims: this latent fits the plan and would run.
    program = decoder.backend.program
    assert tuple(program._method.execute((torch.from_numpy(_z(1, (4, 40, 5))),))[0].shape) == (1, 1, 160, 20)
    # the tile hint works: a 24x24 latent decodes in tiles of 16, as the .onnx does
    z = _z(2, (4, 24, 24))
    np.testing.assert_allclose(decoder.decode(z, tile=16), VAEDecoder(conv_et / "decoder.onnx").decode(z, tile=16),
                               atol=1e-5)


def test_batch_beyond_the_bound(mlp_et):
    """The program refuses it before ExecuTorch sees it (ExecuTorch's own refusal is a bare
    error code); the runtime's backend splits it into calls within the bound."""
    program = pte.PteProgram(mlp_et / "decoder.pte")
    with pytest.raises(pte.PteInputError, match=r"z: batch 65 is outside this program's exported bound 1\.\.64 "
                                                r"\(call in chunks of at most 64\)"):
        program.run({"z": _z(65, (32,))})
    with pytest.raises(RuntimeError, match="0x10"):
        program._method.execute((torch.zeros(65, 32),))
    assert program.run({"z": _z(64, (32,))})[0].shape == (64, 1, 28, 28)  # still usable
    backend = pte.PteBackend(mlp_et / "decoder.pte", expected_sha256=program.sha256)
    z = _z(130, (32,))
    (split,) = backend.run(["x_hat"], {"z": z})
    np.testing.assert_array_equal(split[64:128], program.run({"z": z[64:128]})[0])


# ---- damaged files -----------------------------------------------------------------------------------

def test_tampered_pte_fails_the_integrity_check(mlp_et, tmp_path, runner):
    d = _copy(mlp_et, tmp_path / "t")
    data = bytearray((d / "decoder.pte").read_bytes())
    middle = len(data) // 2  # inside the XNNPACK segment: the weights
    data[middle] ^= 0x01
    (d / "decoder.pte").write_bytes(bytes(data))
    for command in ("verify", "bench"):
        result = runner.invoke(main, [command, "--artifacts", str(d)])
        assert result.exit_code == 1
        one_line_error(result, "integrity check failed: sha256 of decoder.pte does not match the manifest")


def test_tampered_weights_load_in_executorch_and_only_the_sha256_catches_them(mlp_et, tmp_path):
    original = mlp_et / "decoder.pte"
    data = bytearray(original.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(b ^ 0x01 for b in data[middle:middle + 4096])  # small mantissa changes
    (tmp_path / "decoder.pte").write_bytes(bytes(data))
    z = _z(4, (32,))
    loose = pte.PteProgram(tmp_path / "decoder.pte")  # ExecuTorch accepts it
    assert not np.array_equal(loose.run({"z": z})[0], pte.PteProgram(original).run({"z": z})[0])
    with pytest.raises(pte.PteLoadError, match="does not match the manifest's"):
        pte.PteProgram(tmp_path / "decoder.pte", expected_sha256=hashlib.sha256(original.read_bytes()).hexdigest())


def test_truncated_padded_and_foreign_files_are_clear_load_errors(mlp_et, tmp_path):
    data = (mlp_et / "decoder.pte").read_bytes()
    path = tmp_path / "decoder.pte"
    for cut, fragment in ((0, "truncated or empty"), (30, "truncated or empty"), (2000, "truncated"),
                          (len(data) - 1, "truncated")):
        path.write_bytes(data[:cut])
        with pytest.raises(RuntimeInputError, match=fragment):
            VAEDecoder(path)
    path.write_bytes(data + bytes(16))
    with pytest.raises(RuntimeInputError, match="has trailing bytes"):
        VAEDecoder(path)
    path.write_bytes((mlp_et / "decoder.onnx").read_bytes())
    with pytest.raises(RuntimeInputError, match="not an ExecuTorch program"):
        VAEDecoder(path)
    damaged = bytearray(data)
    damaged[40:104] = bytes(64)  # the flatbuffer's tables
    path.write_bytes(bytes(damaged))
    with pytest.raises(RuntimeInputError, match=r"ExecuTorch cannot load it \(.*InvalidProgram\)"):
        VAEDecoder(path)


def test_a_file_that_aborts_the_loader_is_refused_without_crashing(mlp_et, tmp_path):
    """A non-UTF-8 byte in the delegate's backend id: ExecuTorch logs it, its Python bindings
    decode it inside C++ and abort (SIGABRT). The forked probe load takes the hit."""
    data = bytearray((mlp_et / "decoder.pte").read_bytes())
    data[data.find(b"XnnpackBackend") + 3] = 0xFF
    (tmp_path / "decoder.pte").write_bytes(bytes(data))
    with pytest.raises(RuntimeInputError, match=r"crashes loading it \(signal 6\): the file is corrupted"):
        VAEDecoder(tmp_path / "decoder.pte")
    assert os.getpid()  # still here


def test_program_without_our_metadata_is_not_ours(tmp_path):
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(nn.Linear(4, 4), (torch.randn(2, 4),))
    (tmp_path / "decoder.pte").write_bytes(to_edge_transform_and_lower(program).to_executorch().buffer)
    with pytest.raises(RuntimeInputError, match="not a vae-export program"):
        VAEDecoder(tmp_path / "decoder.pte")


# ---- a model whose op does not lower ----------------------------------------------------------------

class LogCumSumExpVAE(nn.Module):
    """A VAE whose decoder uses aten.logcumsumexp: torch.onnx exports it, ExecuTorch's Edge
    dialect refuses it (not in the Core ATen opset). Used through --model."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(784, 8)
        self.dec = nn.Linear(4, 784)

    def encode(self, x):
        h = self.enc(x.flatten(1))
        return h[:, :4], h[:, 4:]

    def decode(self, z):
        h = self.dec(z)
        return torch.sigmoid(h - 0.1 * torch.logcumsumexp(h, 1)).view(-1, 1, 28, 28)


def test_a_model_whose_op_does_not_lower_fails_that_variant_only(tmp_path, runner, monkeypatch):
    from safetensors.torch import save_file

    from vae_export.manifest import Manifest

    torch.manual_seed(0)
    save_file(LogCumSumExpVAE().state_dict(), str(tmp_path / "m.safetensors"))
    monkeypatch.chdir(Path(__file__).parent)
    out = tmp_path / "out"
    result = runner.invoke(main, ["export", "--artifacts", str(out), "--model", "test_executorch:LogCumSumExpVAE",
                                  "--checkpoint", str(tmp_path / "m.safetensors"), "--variant", "fp16",
                                  "--variant", "executorch"])
    assert result.exit_code == 1
    one_line_error(result, "variant executorch: decoder: aten.logcumsumexp.default does not lower",
                   "not in Core ATen", "the other graphs and variants were exported")
    listed = {e.file for e in Manifest.read(out).artifacts}
    assert listed == {"encoder.onnx", "decoder.onnx", "encoder.fp16.onnx", "decoder.fp16.onnx", "encoder.pte"}
    assert {p.name for p in out.iterdir()} == listed | {"manifest.json"}
    assert "encoder.pte" in result.stdout  # the files written are listed before the error
    result = runner.invoke(main, ["verify", "--artifacts", str(out), "--model", "test_executorch:LogCumSumExpVAE",
                                  "--checkpoint", str(tmp_path / "m.safetensors"), "--batch-sizes", "1,3"])
    assert result.exit_code == 0, result.output


def test_lowering_errors_name_the_op_and_the_stage():
    from vae_export.lowering import LoweringError, PteBounds, dynamic_shapes, lower_program

    class Erfinv(nn.Module):
        def forward(self, z):
            return torch.erfinv(torch.tanh(z) * 0.5)

    class BranchOnBatch(nn.Module):  # as diffusers' Upsample2D does
        def forward(self, z):
            return z.contiguous() * 2 if z.shape[0] >= 64 else z * 2

    names = {"input_names": ("z",), "output_names": ("x_hat",)}
    with pytest.raises(LoweringError) as info:
        lower_program(Erfinv(), (torch.randn(2, 8),), dynamic_shapes(("z",)), **names)
    assert info.value.op == "aten.erfinv.default" and info.value.stage == "to_edge"
    assert str(info.value).startswith("aten.erfinv.default does not lower (to_edge: SpecViolationError")
    with pytest.raises(LoweringError, match=r"torch.export suggests batch = Dim\('batch', max=63\)"):
        lower_program(BranchOnBatch(), (torch.randn(2, 8),), dynamic_shapes(("z",)), **names)
    # with the bound torch suggests it lowers, and the planned arena is checked against the limit
    with pytest.raises(LoweringError, match=r"the bounds \[\[63, 8\]\] plan 0 MiB of buffers, over the 0 MiB limit"):
        lower_program(BranchOnBatch(), (torch.randn(2, 8),), dynamic_shapes(("z",), bounds=PteBounds(63)),
                      planned_bytes_limit=1000, **names)


# ---- the family's bounds, and threads ----------------------------------------------------------------

def test_diffusers_family_asks_its_modules_for_smaller_bounds(kl_dir, taesd_dir):
    from vae_export.families import load_model
    from vae_export.families.diffusers import ATTENTION_PTE_BOUNDS
    from vae_export.lowering import PteBounds

    kl = load_model(kl_dir, "diffusers:AutoencoderKL")
    assert kl.family.pte_bounds(kl) == ATTENTION_PTE_BOUNDS == PteBounds(8, 32)
    tiny = load_model(taesd_dir, "diffusers:AutoencoderTiny")
    assert tiny.family.pte_bounds(tiny) == PteBounds(64, 64)


def test_threads_are_set_process_wide():
    before = pte.set_threads(2)
    try:
        assert pte.set_threads(1) == 1
    finally:
        pte.set_threads(before)
    with pytest.raises(RuntimeInputError, match="threads"):
        pte.set_threads(0)
