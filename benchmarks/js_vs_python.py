"""Decode latency of the npm package (onnxruntime-node) beside the Python runtime (onnxruntime) on
the same graphs, one thread each, in one run with the two hosts alternating.

    python benchmarks/js_vs_python.py [--graphs DIR] [--python PY] [--rounds 6] [--iterations 300]

1. Graphs: DIR/mlp/decoder.onnx (the reference 784-400-32 MLP) and DIR/conv/decoder.onnx (the
   reference conv VAE, exported with --dynamic-size, timed at its export size 28x28), exported
   through the toolkit's CLI after a one-epoch training on the embedded digits when DIR lacks
   them (latency does not depend on the weights). Default DIR: a temporary directory.
2. Two long-lived workers, each with the graphs open on one intra-op thread (sequential
   execution, one inter-op thread, full graph optimisation in both): Node running js/src
   (benchmarks/js_vs_python_worker.mjs, onnxruntime-node from js/node_modules) and Python
   running vae_export_runtime (this file with --worker, under `--python`, default this
   interpreter: pass a venv's python to time another onnxruntime build).
3. For each round, graph, batch size (1, 64) and level, each worker times a block of calls
   (`--warmup` untimed, then `--iterations` timed), the two in alternating order (Node first in
   even rounds). Levels: `decode`, the runtime's call an app makes (`decoder.decode(z)`: input
   checks, the run, the output), and `session`, onnxruntime's own run on the same feeds.
4. Prints the machine (CPU model and flags, load average before and after), the versions, and a
   markdown table: the p50 of every timed call per host (p90 beside it), Node / Python as the
   ratio of the p50s, and the range of the per-round ratios. `--json FILE` keeps every figure.

The workers' clocks are their own (time.perf_counter_ns, process.hrtime.bigint); nothing of the
driver or of the pipe between them is inside a timed call.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NODE_WORKER = REPO / "benchmarks" / "js_vs_python_worker.mjs"
BATCHES = (1, 64)
LEVELS = ("decode", "session")
GRAPHS = {"mlp": [], "conv": ["--arch", "conv"]}
EXPORT = {"mlp": [], "conv": ["--dynamic-size"]}


# ---- the Python worker --------------------------------------------------------------------------

def worker() -> None:
    """One JSON request per line on stdin, one JSON answer per line on stdout."""
    import numpy as np

    from vae_export_runtime import VAEDecoder
    from vae_export_runtime.sampling import normal_latents

    decoders: dict[str, VAEDecoder] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "versions":
            import onnxruntime

            answer = {"host": f"python {platform.python_version()}", "onnxruntime": onnxruntime.__version__,
                      "numpy": np.__version__}
        else:
            path, batch = request["graph"], request["batch"]
            if path not in decoders:
                decoders[path] = VAEDecoder(path, threads=1)
            decoder = decoders[path]
            z = normal_latents((batch, *decoder.latent_shape_for(None)), 0)
            if request["level"] == "decode":
                call = functools.partial(decoder.decode, z)
            else:
                call = functools.partial(decoder.session.run, None, {"z": z})
            for _ in range(request["warmup"]):
                call()
            ms = []
            for _ in range(request["iterations"]):
                start = time.perf_counter_ns()
                call()
                ms.append((time.perf_counter_ns() - start) / 1e6)
            answer = {"ms": ms}
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


# ---- the driver ---------------------------------------------------------------------------------

class Host:
    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.process = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)

    def ask(self, request: dict) -> dict:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise SystemExit(f"the {self.name} worker exited (code {self.process.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.process.stdin:
            self.process.stdin.close()
        self.process.wait(timeout=30)


def export_graphs(directory: Path) -> dict[str, Path]:
    """DIR/<kind>/decoder.onnx, exported by the toolkit's CLI when missing."""
    graphs = {kind: directory / kind / "decoder.onnx" for kind in GRAPHS}
    missing = [kind for kind, path in graphs.items() if not path.is_file()]
    if missing:
        from click.testing import CliRunner

        from vae_export.cli import main

        for kind in missing:
            artifacts = str(directory / kind)
            for args in (["train", "--artifacts", artifacts, "--epochs", "1", *GRAPHS[kind]],
                         ["export", "--artifacts", artifacts, *EXPORT[kind]]):
                result = CliRunner().invoke(main, args)
                if result.exit_code != 0:
                    raise SystemExit(f"vae-export {' '.join(args)} failed:\n{result.output}")
    return graphs


def machine() -> dict:
    info: dict = {"machine": platform.machine(), "cores": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    info["cpu"] = fields.get("model name", "?")
    flags = set(fields.get("flags", "").split())
    info["flags"] = sorted(flags)
    info["simd"] = [f for f in ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
                                "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile") if f in flags]
    return info


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--graphs", type=Path, help="directory with mlp/ and conv/ artifacts (exported when missing)")
    parser.add_argument("--python", default=sys.executable, help="interpreter of the Python worker")
    parser.add_argument("--node", default="node")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--json", type=Path, help="write every figure here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return
    if not (REPO / "js" / "node_modules" / "onnxruntime-node").is_dir():
        raise SystemExit("js/node_modules is missing: cd js && ONNXRUNTIME_NODE_INSTALL=skip npm ci")

    temporary = None
    if args.graphs is None:
        temporary = tempfile.TemporaryDirectory(prefix="js-vs-python-")
        args.graphs = Path(temporary.name)
    graphs = export_graphs(args.graphs)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "runtime"), os.environ.get("PYTHONPATH", "")])}
    hosts = {"node": Host("node", [args.node, str(NODE_WORKER)]),
             "python": Host("python", [args.python, str(Path(__file__).resolve()), "--worker"], env)}
    versions = {name: host.ask({"op": "versions"}) for name, host in hosts.items()}
    load_before = loadavg()
    started = time.time()
    ms: dict[tuple[str, str, int, str], list[list[float]]] = {}
    for r in range(args.rounds):
        order = ["node", "python"] if r % 2 == 0 else ["python", "node"]
        for kind, path in graphs.items():
            for batch in BATCHES:
                for level in LEVELS:
                    for name in order:
                        answer = hosts[name].ask({"op": "time", "graph": str(path), "batch": batch, "level": level,
                                                  "warmup": args.warmup, "iterations": args.iterations})
                        ms.setdefault((name, kind, batch, level), []).append(answer["ms"])
    elapsed = time.time() - started
    load_after = loadavg()
    for host in hosts.values():
        host.close()

    rows = []
    for kind in graphs:
        for batch in BATCHES:
            for level in LEVELS:
                node, python = ms[("node", kind, batch, level)], ms[("python", kind, batch, level)]
                flat_node = [v for block in node for v in block]
                flat_python = [v for block in python for v in block]
                ratios = [percentile(n, 0.5) / percentile(p, 0.5) for n, p in zip(node, python)]
                rows.append({"graph": kind, "batch": batch, "level": level,
                             "python_p50_ms": percentile(flat_python, 0.5), "python_p90_ms": percentile(flat_python, 0.9),
                             "node_p50_ms": percentile(flat_node, 0.5), "node_p90_ms": percentile(flat_node, 0.9),
                             "node_over_python": percentile(flat_node, 0.5) / percentile(flat_python, 0.5),
                             "round_ratios": ratios})
    info = machine()
    print(f"CPU: {info.get('cpu')}, {info['cores']} cores; SIMD flags: {' '.join(info.get('simd', []))}")
    print(f"load average before {load_before}, after {load_after}; {elapsed:.0f} s")
    for name, v in versions.items():
        print(f"{name}: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    print(f"\n{args.rounds} rounds x {args.iterations} timed calls (after {args.warmup} warm-up) per host and row, "
          "alternating; 1 thread\n")
    print("| graph | batch | call | Python p50 ms (p90) | Node p50 ms (p90) | Node / Python | per-round range |")
    print("| --- | ---: | --- | ---: | ---: | ---: | --- |")
    for row in rows:
        print(f"| {row['graph']} | {row['batch']} | {row['level']} | {row['python_p50_ms']:.4f} "
              f"({row['python_p90_ms']:.4f}) | {row['node_p50_ms']:.4f} ({row['node_p90_ms']:.4f}) | "
              f"{row['node_over_python']:.2f}x | {min(row['round_ratios']):.2f}-{max(row['round_ratios']):.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "load_before": load_before, "load_after": load_after,
                                         "seconds": elapsed, "versions": versions, "rounds": args.rounds,
                                         "warmup": args.warmup, "iterations": args.iterations, "rows": rows,
                                         "ms": [{"host": k[0], "graph": k[1], "batch": k[2], "level": k[3],
                                                 "rounds": v} for k, v in ms.items()]}))
    if temporary is not None:
        temporary.cleanup()


if __name__ == "__main__":
    main()
