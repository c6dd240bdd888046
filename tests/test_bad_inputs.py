"""Hostile and broken inputs, case by case: each asserts the exit code, the one-line
`Error: ...` naming the file or option, and that nothing was written or changed."""

from __future__ import annotations

import errno
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

from conftest import SimpleVAE, snapshot, write_idx_dir
from vae_export.cli import main
from vae_export.errors import VAEExportError
from vae_export.runtime import RuntimeInputError, VAEDecoder


def one_line_error(result, *fragments: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


class RunsCode:
    """Unpickling this calls os.system: a checkpoint that would run code when loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ---- checkpoints ----------------------------------------------------------------------------

def export_with(runner, tmp_path, checkpoint: Path, *extra: str, env=None):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    (out / "keep.txt").write_text("previous artifacts")
    before = snapshot(out)
    result = runner.invoke(main, ["export", "--artifacts", str(out), "--checkpoint", str(checkpoint), *extra], env=env)
    assert snapshot(out) == before, "export wrote or changed something"
    return result


@pytest.mark.parametrize("force_env", [False, True])
def test_pickle_that_runs_code(tmp_path, runner, force_env):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"encoder.1.weight": RunsCode(marker)}, path)
    env = {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if force_env else None
    result = export_with(runner, tmp_path, path, env=env)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a plain tensor state dict")
    assert not marker.exists()


def test_plain_pickle_that_runs_code(tmp_path, runner):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(RunsCode(marker)))
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1 and not marker.exists()
    one_line_error(result, str(path), "refused")


def test_whole_pickled_module(tmp_path, runner):
    path = tmp_path / "module.pt"
    torch.save(SimpleVAE(), path)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a plain tensor state dict")


def test_non_tensor_values(tmp_path, runner):
    path = tmp_path / "extra.pt"
    torch.save({**SimpleVAE().state_dict(), "epoch": 3}, path)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "found key 'epoch' holding int")


@pytest.mark.parametrize("name,content", [
    ("empty.pt", b""),
    ("random.pt", bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8))),
])
def test_empty_and_random_torch_files(tmp_path, runner, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a plain tensor state dict")


def test_truncated_torch_file(tmp_path, runner):
    path = tmp_path / "trunc.pt"
    torch.save(SimpleVAE().state_dict(), path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path))


def test_truncated_safetensors(tmp_path, runner, checkpoint):
    path = tmp_path / "trunc.safetensors"
    path.write_bytes(checkpoint.read_bytes()[:-1000])
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a valid safetensors file")


def test_safetensors_oversized_header(tmp_path, runner):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a valid safetensors file")


def test_safetensors_too_small(tmp_path, runner):
    path = tmp_path / "tiny.safetensors"
    path.write_bytes(b"\x01\x02\x03")
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a valid safetensors file")


def test_safetensors_trailing_bytes(tmp_path, runner, checkpoint):
    path = tmp_path / "trailing.safetensors"
    path.write_bytes(checkpoint.read_bytes() + b"extra bytes")
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a valid safetensors file", "not fully covered")


def _state(tmp_path, mutate) -> Path:
    state = {k: v.clone() for k, v in SimpleVAE().state_dict().items()}
    mutate(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    return path


def test_wrong_keys(tmp_path, runner):
    path = _state(tmp_path, lambda s: s.__setitem__("fc_sigma.weight", s.pop("fc_logvar.weight")))
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "missing keys encoder.fc_logvar.weight", "unknown keys fc_sigma.weight")


def test_size_mismatch(tmp_path, runner):
    path = _state(tmp_path, lambda s: s.__setitem__("fc_logvar.bias", torch.zeros(31)))
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "size mismatch for 'encoder.fc_logvar.bias': expected [32], found [31]")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(tmp_path, runner, value):
    def poison(s):
        s["decoder.2.weight"][3, 4] = value

    path = _state(tmp_path, poison)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, str(path), "tensor 'decoder.2.weight' holds NaN or Inf values")


def test_non_finite_safetensors(tmp_path, runner):
    state = {k: v.clone() for k, v in SimpleVAE().state_dict().items()}
    state["fc_mu.bias"][0] = float("nan")
    save_file(state, str(tmp_path / "nan.safetensors"))
    result = export_with(runner, tmp_path, tmp_path / "nan.safetensors")
    assert result.exit_code == 1
    one_line_error(result, "fc_mu.bias")


def test_missing_checkpoint_is_usage_error(tmp_path, runner):
    result = export_with(runner, tmp_path, tmp_path / "nope.safetensors")
    assert result.exit_code == 2
    one_line_error(result, "--checkpoint", "nope.safetensors: file not found")


def test_unknown_checkpoint_format(tmp_path, runner):
    path = tmp_path / "weights.h5"
    path.write_bytes(b"xx")
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 2
    one_line_error(result, "unknown format .h5")


def test_image_shape_mismatch(tmp_path, runner):
    path = tmp_path / "seed.pt"
    torch.save(SimpleVAE().state_dict(), path)
    result = export_with(runner, tmp_path, path, "--image-shape", "3,28,28")
    assert result.exit_code == 1
    one_line_error(result, "encoder takes 784 inputs but --image-shape 3,28,28 has 2352")


# ---- ONNX files -------------------------------------------------------------------------------

@pytest.mark.parametrize("cut", ["empty", "truncated"])
def test_broken_onnx_refused_by_inspect(tmp_path, runner, exported_dir, cut):
    path = tmp_path / "broken.onnx"
    data = (exported_dir / "decoder.onnx").read_bytes()
    path.write_bytes(b"" if cut == "empty" else data[: len(data) // 3])
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1
    one_line_error(result, str(path), "not a valid ONNX model")


def test_changed_weight_bytes_caught_by_manifest(artifacts, runner):
    path = artifacts / "encoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the big weight tensor
    path.write_bytes(bytes(data))
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts)])
    assert result.exit_code == 1
    one_line_error(result, "sha256 of encoder.onnx does not match the manifest")


def _rewrite(artifacts: Path, name: str, edit) -> None:
    import hashlib

    model = onnx.load(str(artifacts / name))
    edit(model)
    onnx.save_model(model, str(artifacts / name))
    manifest = json.loads((artifacts / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] == name:
            entry["sha256"] = hashlib.sha256((artifacts / name).read_bytes()).hexdigest()
            entry["bytes"] = (artifacts / name).stat().st_size
    (artifacts / "manifest.json").write_text(json.dumps(manifest))


def _rename_value(model, old: str, new: str) -> None:
    for value in [*model.graph.input, *model.graph.output]:
        if value.name == old:
            value.name = new
    for node in model.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


@pytest.mark.parametrize("old,new,expected", [("z", "latent", "found latent -> x_hat"), ("x_hat", "image", "found z -> image")])
def test_renamed_graph_io(artifacts, runner, old, new, expected):
    _rewrite(artifacts, "decoder.onnx", lambda m: _rename_value(m, old, new))
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts)])
    assert result.exit_code == 1
    one_line_error(result, "decoder.onnx: expected a decoder graph z -> x_hat", expected)
    with pytest.raises(VAEExportError, match="expected a decoder graph"):
        VAEDecoder(artifacts / "decoder.onnx")


def _external(tmp_path: Path, exported_dir: Path, location: str) -> Path:
    model = onnx.load(str(exported_dir / "decoder.onnx"))
    tensor = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    tensor.ClearField("raw_data")
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(int(np.prod(tensor.dims)) * 4))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    d = tmp_path / "model"
    d.mkdir()
    onnx.save_model(model, str(d / "decoder.onnx"))
    return d / "decoder.onnx"


@pytest.mark.parametrize("kind", ["parent", "absolute", "symlink"])
def test_external_data_outside_directory(tmp_path, runner, exported_dir, kind):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\0" * 2_000_000)
    location = {"parent": "../secret.bin", "absolute": str(secret), "symlink": "link.bin"}[kind]
    path = _external(tmp_path, exported_dir, location)
    if kind == "symlink":
        (path.parent / "link.bin").symlink_to(secret)
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1
    one_line_error(result, str(path), "points outside the model's directory; refused")


# ---- data -------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage,expected", [
    ("magic", "bad IDX magic number"),
    ("truncate", "header says"),
    ("count", "expected 5 labels"),
    ("shape", "expected images of shape N x 28 x 28"),
])
def test_bad_idx_files(tmp_path, runner, damage, expected):
    data = tmp_path / "data"
    data.mkdir()
    write_idx_dir(data, shape=(20, 20) if damage == "shape" else (28, 28), label_count=4 if damage == "count" else None)
    target = data / "train-images-idx3-ubyte"
    if damage == "magic":
        target.write_bytes(b"\x00\x00\x09\x03" + target.read_bytes()[4:])
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:-7])
    out = tmp_path / "out"
    result = runner.invoke(main, ["train", "--dataset", "mnist", "--data-dir", str(data), "--artifacts", str(out), "--epochs", "1"])
    assert result.exit_code == 1
    one_line_error(result, expected)
    assert not out.exists() or not any(out.iterdir())


# ---- runtime inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    (np.zeros((32,), np.float32), r"z: expected shape \[batch, 32\], found \[32\]"),
    (np.zeros((2, 31), np.float32), r"found \[2, 31\]"),
    (np.zeros((0, 32), np.float32), "at least one item"),
    (np.full((1, 32), np.nan, np.float32), "NaN or Inf"),
    (np.zeros((1, 32), np.complex64), "real-valued"),
])
def test_runtime_input_checks(exported_dir, bad, message):
    with pytest.raises(RuntimeInputError, match=message):
        VAEDecoder(exported_dir / "decoder.onnx").decode(bad)


def test_runtime_casts_float64(exported_dir):
    decoder = VAEDecoder(exported_dir / "decoder.onnx")
    z = np.random.default_rng(0).standard_normal((2, 32))
    np.testing.assert_array_equal(decoder.decode(z), decoder.decode(z.astype(np.float32)))


# ---- options and files ----------------------------------------------------------------------------

@pytest.mark.parametrize("args,fragment", [
    (["verify", "--batch-sizes", "0"], "Invalid value for '--batch-sizes': expected batch sizes of at least 1"),
    (["bench", "--batch-sizes", "1,x"], "Invalid value for '--batch-sizes'"),
    (["bench", "--min-time", "-1"], "Invalid value for '--min-time'"),
    (["train", "--epochs", "-3"], "Invalid value for '--epochs'"),
    (["train", "--lr", "0"], "Invalid value for '--lr'"),
    (["export", "--variant", "int4"], "Invalid value for '--variant'"),
    (["export", "--image-shape", "28,28"], "Invalid value for '--image-shape'"),
    (["sample", "-n", "0"], "Invalid value for '-n'"),
])
def test_bad_options_exit_2(tmp_path, runner, args, fragment):
    result = runner.invoke(main, [*args, "--artifacts", str(tmp_path)])
    assert result.exit_code == 2
    assert fragment in result.stderr
    assert not any(tmp_path.iterdir())


def test_artifacts_under_a_regular_file(tmp_path, runner):
    (tmp_path / "file").write_text("x")
    result = runner.invoke(main, ["train", "--artifacts", str(tmp_path / "file" / "sub"), "--epochs", "1"])
    assert result.exit_code == 2
    one_line_error(result, "--artifacts", "file is a regular file, not a directory")


def test_unwritable_output(artifacts, runner, tmp_path):
    (tmp_path / "plain").write_text("x")
    result = runner.invoke(main, ["sample", "--artifacts", str(artifacts), "--output", str(tmp_path / "plain" / "s.png")])
    assert result.exit_code == 2
    one_line_error(result, "--output", "is a regular file")


def test_full_disk_during_export_keeps_previous(artifacts, runner, monkeypatch):
    before = snapshot(artifacts)
    real_fsync = os.fsync

    def no_space(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", no_space)
    result = runner.invoke(main, ["export", "--artifacts", str(artifacts)])
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert result.exit_code == 1
    one_line_error(result, "No space left on device")
    assert snapshot(artifacts) == before  # no temp files, nothing replaced


def test_full_disk_during_train_keeps_previous(artifacts, runner, monkeypatch):
    before = snapshot(artifacts)
    monkeypatch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    result = runner.invoke(main, ["train", "--artifacts", str(artifacts), "--epochs", "1"])
    assert result.exit_code == 1
    one_line_error(result, "vae.safetensors: cannot write (No space left on device)")
    assert snapshot(artifacts) == before


def test_internal_error_is_one_line_unless_debug(exported_dir, runner, monkeypatch):
    import vae_export.onnxinfo

    def boom(path):
        raise RuntimeError("boom")

    monkeypatch.setattr(vae_export.onnxinfo, "describe", boom)
    result = runner.invoke(main, ["inspect", str(exported_dir / "decoder.onnx")], env={"VAE_EXPORT_DEBUG": ""})
    assert result.exit_code == 1
    one_line_error(result, "internal error: RuntimeError: boom (rerun with --debug for the traceback)")
    debug = runner.invoke(main, ["--debug", "inspect", str(exported_dir / "decoder.onnx")], env={"VAE_EXPORT_DEBUG": ""})
    assert isinstance(debug.exception, RuntimeError)


class WrongDecodeVAE(torch.nn.Module):
    """encode is fine; decode returns 100 values per image, not 784."""

    def __init__(self):
        super().__init__()
        self.enc = torch.nn.Linear(784, 4)
        self.dec = torch.nn.Linear(2, 100)

    def encode(self, x):
        h = self.enc(x.flatten(1))
        return h[:, :2], h[:, 2:]

    def decode(self, z):
        return self.dec(z)


def test_user_model_with_wrong_decode_shape(tmp_path, runner):
    save_file(WrongDecodeVAE().state_dict(), str(tmp_path / "w.safetensors"))
    result = export_with(runner, tmp_path, tmp_path / "w.safetensors", "--model", "test_bad_inputs:WrongDecodeVAE")
    assert result.exit_code == 1
    one_line_error(result, "decode(z) must return x_hat with 784 values per image", "found [2, 100]")


def test_model_option_not_importable(tmp_path, runner, checkpoint):
    result = export_with(runner, tmp_path, checkpoint, "--model", "no_such_module_xyz:VAE")
    assert result.exit_code == 2
    one_line_error(result, "--model 'no_such_module_xyz:VAE': cannot import no_such_module_xyz")


def test_runtime_refuses_external_data_outside_directory(tmp_path, exported_dir):
    # The torch-free runtime has no onnx package to inspect the file; ONNX Runtime's own
    # path validation (1.20+) refuses it, and the runtime reports that in one line.
    (tmp_path / "secret.bin").write_bytes(b"\0" * 2_000_000)
    path = _external(tmp_path, exported_dir, "../secret.bin")
    with pytest.raises(VAEExportError, match="ONNX Runtime cannot load it.*escapes model directory"):
        VAEDecoder(path)
