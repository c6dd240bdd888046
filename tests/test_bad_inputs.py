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

from conftest import SimpleVAE, one_line_error, snapshot, write_idx_dir
from vae_export.cli import main
from vae_export.errors import VAEExportError
from vae_export.runtime import RuntimeInputError, VAEDecoder


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


# ==== issue 14: artifacts read back are untrusted input too ====================================
# One section per class of the issue; each case asserts the exit code, the one `Error:` line,
# and (for commands on an artifacts directory) that nothing in it changed.

import fcntl
import hashlib
import stat
import subprocess
import sys

from onnx import TensorProto
from onnx import helper as oh


def _edit_manifest(artifacts: Path, edit) -> None:
    data = json.loads((artifacts / "manifest.json").read_text())
    edit(data)
    (artifacts / "manifest.json").write_text(json.dumps(data))


def _replace_graph(artifacts: Path, name: str, model: onnx.ModelProto) -> None:
    """Put a hand-made graph in place of a listed one, with an honest hash and size."""
    onnx.save_model(model, str(artifacts / name))
    data = (artifacts / name).read_bytes()

    def edit(manifest):
        for entry in manifest["artifacts"]:
            if entry["file"] == name:
                entry["sha256"], entry["bytes"] = hashlib.sha256(data).hexdigest(), len(data)

    _edit_manifest(artifacts, edit)


def _decoder_graph(z_type=TensorProto.FLOAT, z_shape=("batch", 32), out_shape=("batch", 1, 28, 28),
                   loop: bool = False, big: bool = False, latent: int = 32) -> onnx.ModelProto:
    """A small decoder z -> x_hat (names right) whose signature or body is what a test needs:
    another input dtype or shape, another output shape, a Loop that never stops, or a node
    that allocates 16 GB."""
    nodes = [oh.make_node("Cast", ["z"], ["zf"], to=TensorProto.FLOAT)]
    inits = [onnx.numpy_helper.from_array(np.zeros((latent, 784), np.float32), "w"),
             onnx.numpy_helper.from_array(np.array([-1, *[d for d in out_shape[1:]]], np.int64), "shape")]
    last = "zf"
    if loop:  # no trip count, a condition that stays true: never returns on its own
        body = oh.make_graph(
            [oh.make_node("Identity", ["cond_in"], ["cond_out"]), oh.make_node("Identity", ["v_in"], ["v_out"])], "body",
            [oh.make_tensor_value_info("i", TensorProto.INT64, []), oh.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
             oh.make_tensor_value_info("v_in", TensorProto.FLOAT, None)],
            [oh.make_tensor_value_info("cond_out", TensorProto.BOOL, []), oh.make_tensor_value_info("v_out", TensorProto.FLOAT, None)])
        nodes += [oh.make_node("Constant", [], ["true"], value=oh.make_tensor("t", TensorProto.BOOL, [], [True])),
                  oh.make_node("Loop", ["", "true", "zf"], ["looped"], body=body)]
        last = "looped"
    nodes.append(oh.make_node("MatMul", [last, "w"], ["flat"]))
    last = "flat"
    if big:  # 4 x 2^30 float32: 16 GB
        inits.append(onnx.numpy_helper.from_array(np.array([4, 1 << 30], np.int64), "big_shape"))
        nodes += [oh.make_node("ConstantOfShape", ["big_shape"], ["big"], value=oh.make_tensor("v", TensorProto.FLOAT, [1], [0.0])),
                  oh.make_node("ReduceSum", ["big"], ["s"], keepdims=0), oh.make_node("Add", ["flat", "s"], ["flat2"])]
        last = "flat2"
    nodes += [oh.make_node("Reshape", [last, "shape"], ["pre"]), oh.make_node("Sigmoid", ["pre"], ["x_hat"])]
    graph = oh.make_graph(nodes, "decoder", [oh.make_tensor_value_info("z", z_type, list(z_shape))],
                          [oh.make_tensor_value_info("x_hat", TensorProto.FLOAT, list(out_shape))], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 18)])
    model.ir_version = 9
    for key, value in (("vae_export.role", "decoder"), ("vae_export.latent_dim", str(latent)),
                       ("vae_export.image_shape", "1,28,28")):
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    return model


def _verify_unchanged(runner, artifacts: Path, *extra: str, env=None):
    before = snapshot(artifacts)
    result = runner.invoke(main, ["verify", "--artifacts", str(artifacts), "--batch-sizes", "1", *extra], env=env)
    assert snapshot(artifacts) == before, "a failing verify changed the artifacts directory"
    return result


# ---- 1. a manifest never names code to run ----------------------------------------------------

@pytest.mark.parametrize("source", ["os:abort", "evil_probe14:Model"])
def test_manifest_model_source_is_never_imported(artifacts, runner, monkeypatch, source):
    marker = artifacts.parent / "ran"
    (artifacts / "evil_probe14.py").write_text(f"open({str(marker)!r}, 'w').write('x')\nModel = object\n")
    monkeypatch.chdir(artifacts)  # the current directory is on the import path for --model
    _edit_manifest(artifacts, lambda d: d["model"].update(source=source))
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 2
    one_line_error(result, "manifest.json", "pass --model MODULE:ATTR", "never imported")
    assert not marker.exists() and "evil_probe14" not in sys.modules


# ---- 2. writes never replace a device node or a symlink --------------------------------------

def test_json_output_to_a_character_device_is_refused(exported_dir, runner):
    for device in ("/dev/full", "/dev/null"):
        before = os.stat(device)
        result = runner.invoke(main, ["inspect", str(exported_dir / "decoder.onnx"), "--json", device])
        assert result.exit_code == 1
        one_line_error(result, device, "special file", "refused")
        after = os.stat(device)
        assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev


def test_json_output_to_a_fifo_is_refused(exported_dir, runner, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result = runner.invoke(main, ["inspect", str(exported_dir / "decoder.onnx"), "--json", str(fifo)])
    assert result.exit_code == 1 and stat.S_ISFIFO(fifo.lstat().st_mode)
    one_line_error(result, "special file")


def test_json_output_through_a_symlink_keeps_the_link(exported_dir, runner, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    result = runner.invoke(main, ["inspect", str(exported_dir / "decoder.onnx"), "--json", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert json.loads(target.read_text())["inputs"][0]["name"] == "z"


# ---- 3. entries are plain file names inside the directory --------------------------------------

@pytest.mark.parametrize("name", ["../outside/decoder.onnx", "/tmp/decoder.onnx", ".hidden.onnx"])
def test_manifest_entry_outside_the_directory(artifacts, runner, name):
    outside = artifacts.parent / "outside"
    outside.mkdir()
    (outside / "decoder.onnx").write_bytes((artifacts / "decoder.onnx").read_bytes())
    _edit_manifest(artifacts, lambda d: d["artifacts"][1].update(file=name))
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "manifest.json", "field artifacts[1].file", "plain file name")


def test_listed_artifact_that_is_a_symlink_is_an_integrity_failure(artifacts, runner):
    real = artifacts.parent / "elsewhere.onnx"
    (artifacts / "decoder.onnx").rename(real)
    (artifacts / "decoder.onnx").symlink_to(real)
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed", "decoder.onnx is a symlink", "nothing was run")


# ---- 4. sizes from untrusted metadata are checked against the tensors present ------------------

def _tiny_safetensors(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "tiny.safetensors"
    save_file({"encoder.fc_mu.bias": torch.zeros(4)}, str(path), metadata={"vae_export.config": json.dumps(config)})
    assert path.stat().st_size < 1024
    return path


@pytest.mark.parametrize("config,fragment", [
    # checked against the tensors in the file, before any module is built
    ({"image_shape": [1, 28, 28], "hidden_dim": 3_000_000, "latent_dim": 32}, "missing keys"),
    # and bounded, whatever the file holds
    ({"image_shape": [1, 40_000, 25_000], "hidden_dim": 400, "latent_dim": 32}, "image_shape asks for 1000000000 values"),
    ({"image_shape": [1, 28, 28], "hidden_dim": 10**12, "latent_dim": 32}, "hidden_dim asks for 1000000000000 values"),
])
def test_config_metadata_asking_for_gigabytes(tmp_path, runner, config, fragment):
    result = export_with(runner, tmp_path, _tiny_safetensors(tmp_path, config))
    assert result.exit_code == 1
    one_line_error(result, "tiny.safetensors", fragment)


@pytest.mark.parametrize("count, fragment", [
    (5_000_000_000, "5000000000 values, more than the limit"),  # a stride-0 view of billions of elements
    (784, "expanded or overlapping view"),
])
def test_expanded_views_are_refused(tmp_path, runner, count, fragment):
    path = tmp_path / "expanded.pt"
    state = SimpleVAE().state_dict()
    state["decoder.2.bias"] = torch.zeros(1).expand(count)
    torch.save(state, path)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, "'decoder.2.bias'", fragment)


# ---- 5. a graph that never stops is stopped ------------------------------------------------

def test_graph_that_never_stops(artifacts, runner):
    _replace_graph(artifacts, "decoder.onnx", _decoder_graph(loop=True))
    result = _verify_unchanged(runner, artifacts, env={"VAE_EXPORT_RUN_TIMEOUT": "1"})
    assert result.exit_code == 1
    one_line_error(result, "decoder.onnx: a run took longer than 1 s and was stopped")
    sample = runner.invoke(main, ["sample", "--artifacts", str(artifacts), "-n", "2", "--output",
                                  str(artifacts.parent / "s.png")], env={"VAE_EXPORT_RUN_TIMEOUT": "1"})
    assert sample.exit_code == 1 and not (artifacts.parent / "s.png").exists()
    one_line_error(sample, "took longer than 1 s")


def test_runtime_stops_a_graph_that_never_stops(tmp_path, monkeypatch):
    onnx.save_model(_decoder_graph(loop=True), str(tmp_path / "decoder.onnx"))
    monkeypatch.setenv("VAE_EXPORT_RUN_TIMEOUT", "0.5")
    with pytest.raises(VAEExportError, match="took longer than 0.5 s and was stopped"):
        VAEDecoder(tmp_path / "decoder.onnx").sample(2, seed=0)


# ---- 6. a failed verify or bench changes nothing, and integrity failures run nothing ------------

def test_flipped_byte_stops_before_anything_runs(artifacts, runner, tmp_path):
    path = artifacts / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    result = _verify_unchanged(runner, artifacts, "--json", str(tmp_path / "v.json"))
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed: sha256 of decoder.onnx", "nothing was run")
    assert "checks passed" not in result.stdout and not (tmp_path / "v.json").exists()


@pytest.mark.parametrize("baseline", [
    "[" * 100_000 + "]" * 100_000,
    '{"results": [1, 2]}',
    '{"results": [{"graph": "decoder"}]}',
])
def test_malformed_baseline_changes_nothing(artifacts, runner, tmp_path, baseline):
    (tmp_path / "base.json").write_text(baseline)
    before = snapshot(artifacts)
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--baseline", str(tmp_path / "base.json"),
                                  "--batch-sizes", "1", "--iterations", "2", "--warmup", "0", "--no-torch"])
    assert result.exit_code == 1
    one_line_error(result, "--baseline", "base.json")
    assert snapshot(artifacts) == before


def test_baseline_with_nan_times_is_refused(artifacts, runner, tmp_path):
    row = {"graph": "decoder", "batch": 1, "threads": 1, "variant": "fp32", "engine": "onnxruntime",
           "provider": "CPUExecutionProvider", "file": "decoder.onnx", "p50_ms": float("nan"), "p90_ms": 1.0,
           "p99_ms": 1.0, "mean_ms": 1.0, "min_ms": 1.0, "throughput_per_s": 1.0, "iterations": 2}
    (tmp_path / "base.json").write_text(json.dumps({"results": [row]}))
    before = snapshot(artifacts)
    result = runner.invoke(main, ["bench", "--artifacts", str(artifacts), "--baseline", str(tmp_path / "base.json"),
                                  "--no-torch"])
    assert result.exit_code == 1
    one_line_error(result, "results[0].p50_ms: expected a finite positive number, found nan")
    assert snapshot(artifacts) == before


# ---- 7. one export at a time per directory --------------------------------------------------------

def test_export_refuses_a_locked_directory(artifacts, runner):
    before = snapshot(artifacts)
    fd = os.open(artifacts, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what another export holds while it writes
        result = runner.invoke(main, ["export", "--artifacts", str(artifacts)])
    finally:
        os.close(fd)
    assert result.exit_code == 1
    one_line_error(result, str(artifacts), "another vae-export process is writing there (lock held)")
    assert snapshot(artifacts) == before


# ---- 8. malformed JSON is one error naming the file and the field ------------------------------

@pytest.mark.parametrize("edit,fragment", [
    (lambda d: d.update(artifacts=[1, 2]), "field artifacts[0]: expected a JSON object, found 1"),
    (lambda d: d.update(artifacts=[]), "field artifacts: expected from 1 to 64 entries, found \"0 entries\""),
    (lambda d: d["model"].pop("latent_dim"), "field model.latent_dim is missing"),
    (lambda d: d.update(opset="18"), "field opset: expected an integer"),
    (lambda d: d["artifacts"][0].update(file="e" * 300 + ".onnx"), "field artifacts[0].file: expected a string of at most 255"),
    (lambda d: d["model"].update(image_shape=[1, 100_000, 100_000]), "field model.image_shape: expected at most 268435456 values"),
    (lambda d: d["artifacts"][0].update(file="\x1b[31mred.onnx"), "field artifacts[0].file"),
])
def test_malformed_manifest_via_verify(artifacts, runner, edit, fragment):
    _edit_manifest(artifacts, edit)
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    line = one_line_error(result, str(artifacts / "manifest.json"), fragment)
    assert "\x1b" not in line  # names from a file are printed escaped


def test_deeply_nested_manifest_and_export_repairs_it(artifacts, runner):
    (artifacts / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "manifest.json", "nested too deeply")
    repaired = runner.invoke(main, ["export", "--artifacts", str(artifacts)])
    assert repaired.exit_code == 0, repaired.output
    assert json.loads((artifacts / "manifest.json").read_text())["format"] == 1


def test_missing_listed_artifact_is_an_integrity_failure(artifacts, runner):
    (artifacts / "decoder.onnx").unlink()
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "integrity check failed: decoder.onnx is missing")


# ---- 9. graphs with the right names and the wrong signature ---------------------------------------

@pytest.mark.parametrize("kwargs,found", [
    ({"z_type": TensorProto.FLOAT16}, "z float16 [batch, 32]"),
    ({"z_shape": (32,), "out_shape": (1, 1, 28, 28)}, "z float [32]"),
    ({"z_shape": ("batch", "latent")}, "z float [batch, latent]"),
    ({"out_shape": ("batch", 784)}, "x_hat float [batch, 784]"),
])
def test_wrong_signature_is_refused(artifacts, runner, kwargs, found):
    model = _decoder_graph(**kwargs)
    _replace_graph(artifacts, "decoder.onnx", model)
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "decoder.onnx: not the decoder signature of the contract",
                   "expected z float [batch, 32]; x_hat float [batch, 1, 28, 28]", found)
    with pytest.raises(VAEExportError, match="not the decoder signature") as info:
        VAEDecoder(artifacts / "decoder.onnx")
    assert found in str(info.value)


def test_node_that_allocates_16_gb_is_refused(artifacts, runner):
    _replace_graph(artifacts, "decoder.onnx", _decoder_graph(big=True))
    result = _verify_unchanged(runner, artifacts)
    assert result.exit_code == 1
    one_line_error(result, "decoder.onnx: value 'big' would hold 4294967296 elements", "refused")


# ---- 10. weights and options -----------------------------------------------------------------------

@pytest.mark.parametrize("kind,fragment", [
    ("complex", "expected a real dtype (float or integer), found torch.complex64"),
    ("meta", "expected a tensor with data on the CPU, found device meta"),
    ("sparse", "expected a dense tensor, found layout torch.sparse_coo"),
])
def test_non_plain_tensors(tmp_path, runner, kind, fragment):
    def poison(s):
        if kind == "complex":
            s["fc_mu.bias"] = torch.full((32,), complex(float("nan"), 1.0))
        elif kind == "meta":
            s["fc_mu.bias"] = torch.empty(32, device="meta")
        else:
            s["fc_mu.bias"] = torch.zeros(32).to_sparse()

    path = _state(tmp_path, poison)
    result = export_with(runner, tmp_path, path)
    assert result.exit_code == 1
    one_line_error(result, "'fc_mu.bias'", fragment)


@pytest.mark.parametrize("args,option", [
    (["bench", "--max-regression", "nan"], "--max-regression"),
    (["bench", "--max-regression", "inf"], "--max-regression"),
    (["bench", "--min-time", "inf"], "--min-time"),
    (["bench", "--min-time", "nan"], "--min-time"),
    (["bench", "--min-time", "601"], "--min-time"),
    (["bench", "--batch-sizes", "99999999"], "--batch-sizes"),
    (["verify", "--atol", "nan"], "--atol"),
    (["sample", "--seed", "-1"], "--seed"),
    (["train", "--lr", "inf"], "--lr"),
    (["train", "--hidden-dim", "3000000"], "--hidden-dim"),
    (["export", "--image-shape", "1,100000,100000"], "--image-shape"),
])
def test_option_values_exit_2_naming_the_option(tmp_path, runner, args, option):
    result = runner.invoke(main, [*args, "--artifacts", str(tmp_path)])
    assert result.exit_code == 2
    assert f"Invalid value for '{option}'" in result.stderr
    assert not any(tmp_path.iterdir())


def test_third_party_warning_does_not_precede_the_error_line(tmp_path):
    """A real process (pytest records warnings itself): torch.load's pickle-protocol warning
    must not come before the one `Error:` line."""
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(RunsCode(tmp_path / "pwned")))
    env = {k: v for k, v in os.environ.items() if k != "VAE_EXPORT_DEBUG"}
    proc = subprocess.run([sys.executable, "-W", "default", "-m", "vae_export", "export", "--artifacts",
                           str(tmp_path / "out"), "--checkpoint", str(path)], capture_output=True, text=True, env=env)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and str(path) in lines[0], proc.stderr


# ---- 11. runtime arguments ---------------------------------------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda vae: vae.anomaly_score(np.zeros((1, 1, 28, 28)), samples=0), r"samples: expected an integer from 1 to 1024, found 0"),
    (lambda vae: vae.anomaly_score(np.zeros((1, 1, 28, 28)), samples=-1), "samples: expected an integer"),
    (lambda vae: vae.anomaly_score(np.zeros((1, 1, 28, 28)), samples=1.5), "samples: expected an integer .* found float"),
    (lambda vae: vae.anomaly_score(np.zeros((1, 1, 28, 28)), seed=-1), "seed: expected an integer from 0"),
    (lambda vae: vae.decoder.sample(2.0), "n: expected an integer .* found float"),
    (lambda vae: vae.decoder.sample(10**9), "n: expected an integer from 1 to 65536"),
    (lambda vae: vae.decoder.sample(2, seed=-3), "seed: expected an integer from 0"),
    (lambda vae: vae.decoder.decode([[0.0] * 32, [0.0] * 31]), "z: expected an array"),
    (lambda vae: vae.decoder.interpolate(np.zeros(32), np.ones(32), steps=10**12), "steps: expected an integer from 2 to 4096"),
    (lambda vae: vae.decoder.interpolate(np.zeros(32), np.ones(32), steps=True), "steps: expected an integer .* found bool"),
    (lambda vae: vae.decoder.interpolate([0.0, [1.0]], np.ones(32)), "z0: expected an array"),
])
def test_runtime_arguments(exported_dir, call, message):
    from vae_export.runtime import VAE

    with pytest.raises(RuntimeInputError, match=message):
        call(VAE(exported_dir / "encoder.onnx", exported_dir / "decoder.onnx"))


@pytest.mark.parametrize("path", [None, 3])
def test_runtime_path_that_is_not_a_path(path):
    with pytest.raises(RuntimeInputError, match="path: expected a file path"):
        VAEDecoder(path)
