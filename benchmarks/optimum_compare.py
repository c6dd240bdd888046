"""Optimum's ONNX export of a diffusers AutoencoderKL beside vae-export's, on the same inputs.

Runs in a separate virtual environment with optimum-onnx installed (it is not a vae-export
dependency; it pins an older huggingface_hub than diffusers 0.42 wants):

    python3 -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install torch==2.13.0 && \
        /tmp/optvenv/bin/pip install -c <(echo torch==2.13.0) optimum-onnx diffusers onnxruntime
    .venv/bin/vae-export export --model diffusers:AutoencoderKL --checkpoint MODEL --artifacts OURS
    /tmp/optvenv/bin/python benchmarks/optimum_compare.py MODEL OURS /tmp/optimum_out

Optimum's graphs are built with its own VaeEncoderOnnxConfig / VaeDecoderOnnxConfig and the
forward patches its diffusers exporter uses (optimum/exporters/utils.py), then validated with its
own `validate_model_outputs`. Prints both signatures and the largest differences.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch


def main(model_dir: str, ours: str, out: str) -> None:
    from diffusers import AutoencoderKL
    from optimum.exporters.onnx import export, validate_model_outputs
    from optimum.exporters.onnx.model_configs import VaeDecoderOnnxConfig, VaeEncoderOnnxConfig

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    for role, config_cls in (("encoder", VaeEncoderOnnxConfig), ("decoder", VaeDecoderOnnxConfig)):
        vae = AutoencoderKL.from_pretrained(model_dir).eval()
        if role == "encoder":  # optimum/exporters/utils.py, _get_submodels_for_export_diffusion
            vae.forward = lambda sample: {"latent_parameters": vae.encode(x=sample)["latent_dist"].parameters}
        else:
            vae.forward = lambda latent_sample: vae.decode(z=latent_sample)
        config = config_cls(vae.config, task="semantic-segmentation")
        path = out_dir / f"optimum_{role}.onnx"
        inputs, outputs = export(vae, config, path)
        try:
            validate_model_outputs(config, vae, path, outputs, config.ATOL_FOR_VALIDATION)
            verdict = f"optimum's validation passed (atol {config.ATOL_FOR_VALIDATION})"
        except Exception as exc:  # its validation raises on a mismatch
            verdict = f"optimum's validation FAILED: {str(exc).splitlines()[0]}"
        paths[role] = path
        print(f"optimum {role}: {verdict}")

    def sig(path: Path) -> str:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        fmt = lambda vs: ", ".join(f"{v.name} {v.shape}" for v in vs)  # noqa: E731
        return f"in: {fmt(s.get_inputs())} | out: {fmt(s.get_outputs())}"

    for role in ("encoder", "decoder"):
        print(f"{role} optimum    {sig(paths[role])}")
        print(f"{role} vae-export {sig(Path(ours) / f'{role}.onnx')}")

    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 64, 96), dtype=np.float32)  # [0, 1] pixels, non-square
    ours_enc = ort.InferenceSession(f"{ours}/encoder.onnx", providers=["CPUExecutionProvider"])
    opt_enc = ort.InferenceSession(str(paths["encoder"]), providers=["CPUExecutionProvider"])
    mu, logvar = ours_enc.run(None, {"x": x})
    (params,) = opt_enc.run(None, {"sample": 2 * x - 1})
    o_mu, o_logvar = np.split(params, 2, axis=1)
    print(f"encoder: max |mu - optimum mean| {np.abs(mu - o_mu).max():.2e}; max |logvar - optimum logvar| "
          f"{np.abs(logvar - o_logvar).max():.2e} (optimum's logvar is unclamped; "
          f"{int((np.abs(o_logvar.clip(-30, 20) - o_logvar) > 0).sum())} values outside diffusers' [-30, 20])")
    z = rng.standard_normal((2, 4, mu.shape[2], mu.shape[3])).astype(np.float32)
    ours_dec = ort.InferenceSession(f"{ours}/decoder.onnx", providers=["CPUExecutionProvider"])
    opt_dec = ort.InferenceSession(str(paths["decoder"]), providers=["CPUExecutionProvider"])
    (x_hat,) = ours_dec.run(None, {"z": z})
    (sample,) = opt_dec.run(None, {"latent_sample": z})
    print(f"decoder: max |x_hat - clamp((optimum + 1) / 2)| {np.abs(x_hat - ((sample + 1) / 2).clip(0, 1)).max():.2e}; "
          f"optimum's output range [{sample.min():.2f}, {sample.max():.2f}] (not clamped, [-1, 1] convention)")


if __name__ == "__main__":
    torch.manual_seed(0)
    main(*sys.argv[1:4])
