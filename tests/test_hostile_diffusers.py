"""Hostile diffusers directories (issue 28): configs are read with diffusers' own defaults
applied and nothing hidden from the unknown-key check, and a config is sized by the memory
its trial runs imply (on the meta device) before any of them runs."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import one_line_error

diffusers = pytest.importorskip("diffusers")

from vae_export.cli import main  # noqa: E402
from vae_export.families import diffusers as family  # noqa: E402

GIB = 1 << 30


def _with_config(src, dst, **changes):
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config.update(changes)
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def _export(runner, model, out, cls="AutoencoderKL"):
    return runner.invoke(main, ["export", "--model", f"diffusers:{cls}", "--checkpoint", str(model),
                                "--artifacts", str(out)])


def test_use_default_values_does_not_hide_a_value(kl_dir, runner, tmp_path):
    """`_use_default_values` (diffusers' loader defaults the keys it names; save_pretrained
    never writes it) made the export record the class default 0.18215 where the config says
    0.5: the config's own value is what the model is built with and what is recorded."""
    model = _with_config(kl_dir, tmp_path / "model", _use_default_values=["scaling_factor"])
    result = _export(runner, model, tmp_path / "out")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["model"]["config"]["diffusers"]["scaling_factor"] == 0.5
    import onnx

    meta = {p.key: p.value for p in onnx.load(tmp_path / "out" / "decoder.onnx").metadata_props}
    assert json.loads(meta["vae_export.scaling_factor"]) == 0.5


def test_use_default_values_does_not_hide_an_unknown_key(kl_dir, runner, tmp_path):
    model = _with_config(kl_dir, tmp_path / "model", latent_channel=8, _use_default_values="latent_channel")
    result = _export(runner, model, tmp_path / "out")
    assert result.exit_code == 1, result.output
    one_line_error(result, "unknown config keys latent_channel")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_tiny_config_that_upsamples_256x_is_refused_before_its_trial(taesd_dir, runner, tmp_path, monkeypatch):
    """A 40 KB AutoencoderTiny config with upsampling_scaling_factor 256 reached 4.5 GB and
    asked for 8 GiB in its trial decode: refused from the meta model, in one line."""
    monkeypatch.setattr(family, "available_memory", lambda: 4 * GIB)
    model = _with_config(taesd_dir, tmp_path / "model", upsampling_scaling_factor=256)
    result = _export(runner, model, tmp_path / "out", "AutoencoderTiny")
    assert result.exit_code == 1, result.output
    one_line_error(result, str(model / "config.json"), "trial runs", "more than the 4.0 GiB of memory available")


def test_consistent_deep_config_is_refused_before_its_trial(kl_dir, runner, tmp_path, monkeypatch):
    """A consistent AutoencoderKL config of 10 blocks (stride 512: export size 4096x4096,
    trial at 8192x8192) ran a multi-GB trial encode: refused before it, in one line."""
    monkeypatch.setattr(family, "available_memory", lambda: 4 * GIB)
    blocks = 10
    model = _with_config(kl_dir, tmp_path / "model", block_out_channels=[8] * blocks,
                         down_block_types=["DownEncoderBlock2D"] * blocks, up_block_types=["UpDecoderBlock2D"] * blocks)
    # The weights must match the config for anything past the config checks: a fresh model.
    vae = diffusers.AutoencoderKL(**{k: v for k, v in json.loads((model / "config.json").read_text()).items()
                                     if not k.startswith("_")})
    vae.save_pretrained(model)
    result = _export(runner, model, tmp_path / "out")
    assert result.exit_code == 1, result.output
    one_line_error(result, "trial runs", "4096x4096 and 8192x8192", "more than the 4.0 GiB")


def test_config_whose_export_size_is_past_the_pixel_bound_is_refused(kl_dir, runner, tmp_path):
    blocks = 12  # stride 2048: 8 latent cells a side are 16384x16384 pixels
    model = _with_config(kl_dir, tmp_path / "model", block_out_channels=[8] * blocks,
                         down_block_types=["DownEncoderBlock2D"] * blocks, up_block_types=["UpDecoderBlock2D"] * blocks)
    result = _export(runner, model, tmp_path / "out")
    assert result.exit_code == 1, result.output
    one_line_error(result, "export size of 16384x16384", "more than 67108864 pixels")


def test_meta_trial_estimate_is_close_to_a_real_run(kl_dir):
    """The meta estimate against the same run for real (ru_maxrss growth would be noisy in
    one process: compare with the bytes PyTorch's allocator reports instead)."""
    import torch

    from vae_export.families.diffusers import DiffusersVAE
    from vae_export.meta_trial import peak_bytes

    config = {k: v for k, v in json.loads((kl_dir / "config.json").read_text()).items() if not k.startswith("_")}
    with torch.device("meta"):
        meta = DiffusersVAE(diffusers.AutoencoderKL(**config).eval())
    x = torch.zeros(2, 3, 256, 256, device="meta")
    estimate = peak_bytes(lambda: meta.encode(x))
    # Every activation of the first down block at full size: 2 x 8 x 256 x 256 floats is 4 MiB.
    assert 4 << 20 <= estimate < 64 << 20
