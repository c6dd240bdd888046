"""What ONNX Runtime itself offers on the SD-sized VAE decoder, each option timed against the
project's session (`vae_export_runtime.session.make_session`) in one run, alternating, as ratios.

    nice -n 19 .venv/bin/python -u benchmarks/sd_ort_options.py /tmp/w17/sd/artifacts/decoder.onnx \\
        --work /tmp/w17b/opts --size 256x256 --threads 2 --rounds 3

Candidates (each a graph file and session options; the graph files are written under --work):
- base: the exported graph as `make_session` opens it (ORT_ENABLE_ALL: NCHWc layout on x86).
- extended / basic: lower graph optimisation levels (no NCHWc layout transform).
- static: the same graph with its symbolic sizes fixed to --size (onnxruntime's own
  `make_dim_param_fixed`, what a user of one size could do); ORT folds the Shape arithmetic.
- nospin: `session.intra_op.allow_spinning` = 0 (the pool sleeps between ops instead of spinning).
- groupnorm21: the Reshape + InstanceNormalization + Reshape + Mul + Add pattern of the dynamo
  export replaced by ONNX's GroupNormalization (opset 21).
- transformers: `onnxruntime.transformers.optimizer.optimize_model(model_type="unet")` with
  NhwcConv off (no CPU kernel): GroupNorm fusion into com.microsoft.GroupNorm/SkipGroupNorm
  (reported as failing to load where those contrib ops have no CPU kernel).
- torch: diffusers' AutoencoderKL.decode in eager PyTorch (`--diffusers DIR`), the issue's reference.
Output: p50 per candidate over --rounds rounds (each round runs every candidate once, in turn)
and the ratio base/candidate (> 1: the candidate is faster), and the max abs difference of its
output from base's (parity).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from vae_export_runtime.session import session_options

Candidate = tuple[Path, Callable[[ort.SessionOptions], None]]


def _keep(_: ort.SessionOptions) -> None:
    pass


def _level(level: ort.GraphOptimizationLevel) -> Callable[[ort.SessionOptions], None]:
    def apply(options: ort.SessionOptions) -> None:
        options.graph_optimization_level = level
    return apply


def _config(key: str, value: str) -> Callable[[ort.SessionOptions], None]:
    def apply(options: ort.SessionOptions) -> None:
        options.add_session_config_entry(key, value)
    return apply


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path), save_as_external_data=True, location=path.name + ".data")
    return path


def static_graph(src: Path, dst: Path, batch: int, h: int, w: int) -> Path:
    from onnxruntime.tools.onnx_model_utils import make_dim_param_fixed

    model = onnx.load(str(src))
    for name, value in (("batch", batch), ("latent_height", h), ("latent_width", w)):
        make_dim_param_fixed(model.graph, name, value)
    # the output's symbolic sizes are ORT's to infer now
    for out in model.graph.output:
        for dim in out.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.Clear()
    return _save(model, dst)


def groupnorm21_graph(src: Path, dst: Path) -> Path:
    """Reshape(x, [0, G, -1]) -> InstanceNormalization(ones, zeros) -> Reshape(shape(x)) ->
    Mul(gamma) -> Add(beta) becomes GroupNormalization(x, gamma, beta, num_groups=G) (opset 21:
    per-channel scale and bias)."""
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    drop: set[int] = set()
    new_nodes: dict[int, onnx.NodeProto] = {}
    for norm in [n for n in g.node if n.op_type == "InstanceNormalization"]:
        pre = producers[norm.input[0]]
        (post,) = consumers[norm.output[0]]
        (mul,) = consumers[post.output[0]]
        (add,) = consumers[mul.output[0]]
        assert pre.op_type == "Reshape" and post.op_type == "Reshape" and mul.op_type == "Mul" and add.op_type == "Add"
        groups = int(inits[norm.input[1]].dims[0])
        eps = next(a.f for a in norm.attribute if a.name == "epsilon")
        gamma = numpy_helper.to_array(inits[mul.input[1]]).reshape(-1)
        beta = numpy_helper.to_array(inits[add.input[1]]).reshape(-1)
        g.initializer.extend([numpy_helper.from_array(gamma, mul.input[1] + "_c"),
                              numpy_helper.from_array(beta, add.input[1] + "_c")])
        node = helper.make_node("GroupNormalization", [pre.input[0], mul.input[1] + "_c", add.input[1] + "_c"],
                                [add.output[0]], num_groups=groups, epsilon=eps)
        index = {id(n): k for k, n in enumerate(g.node)}
        for n in (pre, norm, post, mul, add):
            drop.add(index[id(n)])
        new_nodes[index[id(add)]] = node
    kept = [new_nodes.get(k, n) for k, n in enumerate(g.node) if k not in drop or k in new_nodes]
    del g.node[:]
    g.node.extend(kept)
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx"):
            op.version = 21
    return _save(model, dst)


def transformers_graph(src: Path, dst: Path) -> Path:
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    options = FusionOptions("unet")
    options.enable_nhwc_conv = False  # NhwcConv has no CPU kernel
    opt = optimize_model(str(src), model_type="unet", opt_level=0, use_gpu=False, optimization_options=options)
    print(f"transformers optimizer: fused ops {opt.get_fused_operator_statistics()}", flush=True)
    opt.save_model_to_file(str(dst), use_external_data_format=True)
    return dst


class TorchDecoder:
    """diffusers' decode with the graph's post-processing, behind ORT's `run` signature."""

    def __init__(self, directory: Path, threads: int) -> None:
        import torch
        from diffusers import AutoencoderKL

        torch.set_num_threads(threads)
        self.torch = torch
        self.vae = AutoencoderKL.from_pretrained(directory).eval()

    def run(self, _: None, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with self.torch.inference_mode():
            x = self.vae.decode(self.torch.from_numpy(feeds["z"])).sample
        return [((x + 1) / 2).clamp(0, 1).numpy()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("decoder", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--size", default="256x256")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--candidates", default="base,extended,basic,static,nospin,groupnorm21,transformers")
    parser.add_argument("--diffusers", type=Path, default=None, help="adds PyTorch eager on this save_pretrained directory")
    args = parser.parse_args()
    h, w = (int(v) // 8 for v in args.size.split("x"))
    args.work.mkdir(parents=True, exist_ok=True)
    z = np.random.default_rng(0).standard_normal((1, 4, h, w), dtype=np.float32)

    builders: dict[str, Callable[[], Candidate]] = {
        "base": lambda: (args.decoder, _keep),
        "extended": lambda: (args.decoder, _level(ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED)),
        "basic": lambda: (args.decoder, _level(ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)),
        "static": lambda: (static_graph(args.decoder, args.work / f"static{h}x{w}.onnx", 1, h, w), _keep),
        "nospin": lambda: (args.decoder, _config("session.intra_op.allow_spinning", "0")),
        "groupnorm21": lambda: (groupnorm21_graph(args.decoder, args.work / "groupnorm21.onnx"), _keep),
        "transformers": lambda: (transformers_graph(args.decoder, args.work / "transformers.onnx"), _keep),
    }
    sessions: dict[str, ort.InferenceSession] = {}
    for name in args.candidates.split(","):
        try:
            path, tweak = builders[name]()
            options = session_options(args.threads)
            tweak(options)
            started = time.perf_counter()
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            print(f"{name}: loaded in {time.perf_counter() - started:.1f} s", flush=True)
        except Exception as exc:  # a candidate ORT cannot build or load is a finding, not a crash
            print(f"{name}: FAILED ({type(exc).__name__}: {str(exc).splitlines()[0][:300]})", flush=True)

    if args.diffusers is not None:
        sessions["torch"] = TorchDecoder(args.diffusers, args.threads)  # type: ignore[assignment]

    outputs: dict[str, np.ndarray] = {}
    for name, session in sessions.items():  # warm-up, and the output for parity
        outputs[name] = session.run(None, {"z": z})[0]
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for r in range(args.rounds):
        for name, session in sessions.items():
            started = time.perf_counter()
            session.run(None, {"z": z})
            times[name].append(time.perf_counter() - started)
        print(f"round {r + 1}: " + ", ".join(f"{n} {t[-1]:.2f} s" for n, t in times.items()), flush=True)
    base = statistics.median(times["base"]) if "base" in times else None
    print(f"\n{args.size}, batch 1, {args.threads} threads, {args.rounds} rounds alternating; p50 and base/candidate")
    for name, t in times.items():
        p50 = statistics.median(t)
        diff = float(np.max(np.abs(outputs[name] - outputs["base"]))) if "base" in outputs else float("nan")
        ratio = f"{base / p50:.2f}x" if base else "-"
        print(f"  {name:<13} p50 {p50:6.2f} s  (min {min(t):.2f})  base/this {ratio:>6}  max|out - base| {diff:.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
