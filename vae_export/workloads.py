"""Reference workloads that benchmarks and tests share (never shipped to a user's graphs):

- `SD15_VAE_CONFIG` and `write_random_autoencoder`: the public Stable Diffusion 1.5 VAE
  architecture (block_out_channels 128, 256, 512, 512; layers_per_block 2; 32 groups; latent
  4 channels, stride 8) with seeded random weights, saved with diffusers' own save_pretrained
  (no weights can be downloaded here; timings do not depend on weight values);
- `slow_decoder` and `slowed_copy`: an artifact set whose decoder is slower by a known amount
  with bit-identical outputs, the A/B workload of the latency gate's studies and tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

from vae_export.artifacts import atomic_write_json, sha256_file

SD15_VAE_CONFIG = {
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}


def write_random_autoencoder(directory: Path, seed: int = 0) -> Path:
    """An AutoencoderKL of SD15_VAE_CONFIG with seeded random weights, saved once into `directory`."""
    import torch
    from diffusers import AutoencoderKL

    if not (directory / "config.json").is_file():
        torch.manual_seed(seed)
        AutoencoderKL(**SD15_VAE_CONFIG).save_pretrained(directory)
    return directory


def slow_decoder(model: onnx.ModelProto, products: int) -> onnx.ModelProto:
    """The decoder with `products` x @ I products after the hidden ReLU (outputs unchanged)."""
    graph = model.graph
    relu = next(n for n in graph.node if n.op_type == "Relu")
    hidden = next(i for i in graph.initializer if i.name == model.graph.node[0].input[1]).dims[0]
    graph.initializer.append(numpy_helper.from_array(np.eye(hidden, dtype=np.float32), "gate_study_identity"))
    source = relu.output[0]
    consumers = [n for n in graph.node if source in n.input]
    new_nodes, last = [], source
    for k in range(products):
        out = f"gate_study_slow_{k}"
        new_nodes.append(helper.make_node("MatMul", [last, "gate_study_identity"], [out], name=out))
        last = out
    for node in consumers:
        node.input[list(node.input).index(source)] = last
    position = list(graph.node).index(relu) + 1
    for offset, node in enumerate(new_nodes):
        graph.node.insert(position + offset, node)
    onnx.checker.check_model(model)
    return model


def slowed_copy(a: Path, b: Path, products: int) -> None:
    """B: a copy of artifact set A whose decoder runs `products` extra identity products (the
    manifest's hash updated); raises SystemExit when B's outputs are not A's bit for bit."""
    if b.exists():
        shutil.rmtree(b)
    shutil.copytree(a, b)
    onnx.save(slow_decoder(onnx.load(a / "decoder.onnx"), products), b / "decoder.onnx")
    manifest = json.loads((b / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["file"] == "decoder.onnx":
            entry["sha256"], entry["bytes"] = sha256_file(b / "decoder.onnx"), (b / "decoder.onnx").stat().st_size
    atomic_write_json(b / "manifest.json", manifest)
    # Identical outputs: the only difference a gate may see is time.
    rng = np.random.default_rng(0)
    for batch in (1, 64):
        z = rng.standard_normal((batch, manifest["model"]["latent_dim"])).astype(np.float32)
        outs = [ort.InferenceSession(str(d / "decoder.onnx"), providers=["CPUExecutionProvider"]).run(None, {"z": z})[0]
                for d in (a, b)]
        if not np.array_equal(*outs):
            raise SystemExit("B's decoder output differs from A's: the study needs identical outputs")
