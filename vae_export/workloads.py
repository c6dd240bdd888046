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


def slow_decoder(model: onnx.ModelProto, products: int, parts: int = 1) -> onnx.ModelProto:
    """The decoder with `products` identity products after the hidden ReLU (outputs unchanged).
    With `parts` > 1 each product runs on the hidden layer cut into `parts` rows
    ([batch, H] -> [batch * parts, H / parts] @ I, then back): 1/parts of the arithmetic of a
    full H x H product, for slow-downs finer than one product gives (a 400 x 400 product makes
    the reference decoder ~1.4x slower; parts=2, ~1.25x: RESULTS.md, "Latency gate")."""
    graph = model.graph
    relu = next(n for n in graph.node if n.op_type == "Relu")
    hidden = next(i for i in graph.initializer if i.name == model.graph.node[0].input[1]).dims[0]
    if parts < 1 or hidden % parts:
        raise ValueError(f"parts: expected a divisor of the hidden width {hidden}, found {parts}")
    width = hidden // parts
    graph.initializer.append(numpy_helper.from_array(np.eye(width, dtype=np.float32), "gate_study_identity"))
    source = relu.output[0]
    consumers = [n for n in graph.node if source in n.input]
    new_nodes, last = [], source
    if parts > 1:
        for name, shape in (("gate_study_rows", [-1, width]), ("gate_study_back", [-1, hidden])):
            graph.initializer.append(numpy_helper.from_array(np.array(shape, dtype=np.int64), name))
        new_nodes.append(helper.make_node("Reshape", [last, "gate_study_rows"], ["gate_study_cut"], name="gate_study_cut"))
        last = "gate_study_cut"
    for k in range(products):
        out = f"gate_study_slow_{k}"
        new_nodes.append(helper.make_node("MatMul", [last, "gate_study_identity"], [out], name=out))
        last = out
    if parts > 1:
        new_nodes.append(helper.make_node("Reshape", [last, "gate_study_back"], ["gate_study_joined"],
                                          name="gate_study_joined"))
        last = "gate_study_joined"
    for node in consumers:
        node.input[list(node.input).index(source)] = last
    position = list(graph.node).index(relu) + 1
    for offset, node in enumerate(new_nodes):
        graph.node.insert(position + offset, node)
    onnx.checker.check_model(model)
    return model


def slowed_copy(a: Path, b: Path, products: int, parts: int = 1) -> None:
    """B: a copy of artifact set A whose decoder runs `products` extra identity products, each
    on the hidden layer cut into `parts` rows (`slow_decoder`; the manifest's hash updated);
    raises SystemExit when B's outputs are not A's bit for bit."""
    if b.exists():
        shutil.rmtree(b)
    shutil.copytree(a, b)
    onnx.save(slow_decoder(onnx.load(a / "decoder.onnx"), products, parts), b / "decoder.onnx")
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


# ---- artifact sets for the runtimes' own suites (Python alone, JavaScript) ------------------------

# One artifacts directory per model kind, as `vae-export train` and `export` leave them (small
# widths, one epoch on the embedded digits: weights past their initialisation, in seconds).
RUNTIME_KINDS = ("flat", "conv", "cond", "m2", "kl")
_TRAIN = {
    "flat": {"hidden_dim": 64, "latent_dim": 16},
    "conv": {"arch": "conv", "channels": 8},
    "cond": {"hidden_dim": 64, "latent_dim": 8, "conditional": True},
    "m2": {"hidden_dim": 64, "latent_dim": 8, "labels": 100},
}
_VARIANTS = {"flat": ("int8", "fp16", "ort"), "conv": ("fp16",), "cond": ("int8",), "m2": ("int8",),
             "kl": ("fp16-mixed",)}
TINY_KL_CONFIG = {"block_out_channels": (8, 16), "down_block_types": ("DownEncoderBlock2D",) * 2,
                  "up_block_types": ("UpDecoderBlock2D",) * 2, "layers_per_block": 1, "norm_num_groups": 4,
                  "latent_channels": 4, "sample_size": 32, "scaling_factor": 0.5}
GOLDEN = "golden.npz"
GOLDEN_BATCH = 3


def runtime_fixtures(out: Path, kinds: tuple[str, ...] = RUNTIME_KINDS) -> Path:
    """Export every kind into `out/<kind>/` (re-used when its golden file is there), each with
    `golden.npz`: PyTorch's own outputs of every graph on fixed inputs, so that a runtime with no
    torch can check its outputs against the model's."""
    from vae_export.options import ExportOptions, ModelSource, TrainOptions
    from vae_export.pipeline import export_into, train_into

    for kind in kinds:
        d = out / kind
        if (d / GOLDEN).is_file():
            continue
        d.mkdir(parents=True, exist_ok=True)
        if kind == "kl":
            import torch
            from diffusers import AutoencoderKL

            torch.manual_seed(0)
            AutoencoderKL(**TINY_KL_CONFIG).save_pretrained(out / "kl-model")
            source = ModelSource(checkpoint=out / "kl-model", model_ref="diffusers:AutoencoderKL")
        else:
            train_into(d, TrainOptions(epochs=1, **_TRAIN[kind]))  # type: ignore[arg-type]
            source = ModelSource()
        export_into(d, source, ExportOptions(variants=_VARIANTS[kind], dynamic_size=kind == "conv"))
        write_golden(d)
    if "flat" in kinds:  # a valid decoder graph with no vae_export.* metadata: another tool's
        _without_keys(out / "flat" / "decoder.onnx", out / NOT_OURS, "vae_export.")
    if "conv" in kinds:  # a symbolic-size decoder as exporters before `export_size` wrote it
        _without_keys(out / "conv" / "decoder.onnx", out / NO_EXPORT_SIZE, "vae_export.export_size")
    return out


NOT_OURS = "not-ours.onnx"
NO_EXPORT_SIZE = "conv-without-export-size.onnx"


def _without_keys(graph: Path, target: Path, prefix: str) -> None:
    """A copy of `graph` without the metadata keys starting with `prefix`."""
    model = onnx.load(str(graph))
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(prefix)]
    del model.metadata_props[:]
    for key, value in kept:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(target))


def write_golden(artifacts: Path) -> None:
    """`golden.npz` beside the graphs: each graph's inputs (seeded; conditional models get one
    class per row) and PyTorch's outputs for them, keyed `<graph>.<value>`."""
    from vae_export.graphs import torch_outputs
    from vae_export.inputs import with_labels
    from vae_export.manifest import Manifest
    from vae_export.pipeline import load_for_manifest
    from vae_export_runtime.sampling import normal_latents

    manifest = Manifest.read(artifacts)
    loaded = load_for_manifest(artifacts, manifest)
    g = loaded.geometry
    rng = np.random.default_rng(0)
    primary = {"decoder": normal_latents((GOLDEN_BATCH, *g.latent_shape), 7),
               "encoder": rng.random((GOLDEN_BATCH, *g.image_shape), dtype=np.float32)}
    primary["classifier"] = primary["encoder"]
    golden: dict[str, np.ndarray] = {}
    for spec in g.specs():
        feeds = with_labels(spec.input_names, primary[spec.role], g.num_classes)
        outputs = torch_outputs(loaded.module(spec.role), spec.input_names, feeds)
        golden.update({f"{spec.role}.{name}": value for name, value in feeds.items()})
        golden.update({f"{spec.role}.{name}": value for name, value in zip(spec.output_names, outputs)})
    np.savez(artifacts / GOLDEN, **golden)
