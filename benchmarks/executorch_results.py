"""ExecuTorch figures for RESULTS.md (issue 27): per family, export with the executorch,
executorch-int8 and ort variants, verify at batch 1, 3 and 64 (the parity table: max abs
difference of the .pte against PyTorch, worst output, per graph and size; int8 decoder PSNR and
encoder mu error), the files' sizes and the .pte facts the manifest records (bounds, planned
arena, ops outside XNNPACK); then for the MLP and conv decoders the latency of ExecuTorch vs ONNX
Runtime vs PyTorch eager through `vae-export bench` (one run per model, the engines alternating),
whose command line is printed so that the table can be re-measured alone.

    .venv/bin/python benchmarks/executorch_results.py --work /tmp/et-results --json et.json

Families: mlp (the reference MLP, digits), seed (the seed's SimpleVAE, a plain state dict,
random weights), conv (the conv reference, --dynamic-size), cond (conditional MLP), m2
(semi-supervised, with a classifier), tiny and kl (diffusers AutoencoderTiny and AutoencoderKL,
the tests' tiny configs, random weights). Needs `pip install 'vae-export[executorch,diffusers]'`.
About 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

FAMILIES = ("mlp", "seed", "conv", "cond", "m2", "tiny", "kl")
VARIANTS = ("executorch", "executorch-int8", "ort")
TINY_TAESD_CONFIG = dict(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                         num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)


def prepare(family: str, d: Path) -> tuple[Any, Any, tuple[tuple[int, int], ...] | None]:
    """(ModelSource, ExportOptions, verify sizes) of a family, its checkpoint written into d."""
    import torch

    from vae_export.options import ExportOptions, ModelSource, TrainOptions
    from vae_export.pipeline import train_into
    from vae_export.workloads import TINY_KL_CONFIG

    d.mkdir(parents=True, exist_ok=True)
    options = ExportOptions(variants=VARIANTS)
    if family in ("mlp", "conv", "cond", "m2"):
        train = {"mlp": TrainOptions(epochs=10), "conv": TrainOptions(arch="conv", epochs=3),
                 "cond": TrainOptions(conditional=True, epochs=5), "m2": TrainOptions(labels=100, epochs=5)}[family]
        if not (d / "vae.safetensors").is_file():
            train_into(d, train)
        if family == "conv":
            return ModelSource(), ExportOptions(variants=VARIANTS, dynamic_size=True), None
        return ModelSource(), options, None
    if family == "seed":
        from torch import nn

        class SimpleVAE(nn.Module):  # the seed's model (tests/conftest.py), as users have it
            def __init__(self, latent_dim: int = 32, hidden: int = 400) -> None:
                super().__init__()
                self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
                self.fc_mu = nn.Linear(hidden, latent_dim)
                self.fc_logvar = nn.Linear(hidden, latent_dim)
                self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784),
                                             nn.Sigmoid())

        torch.manual_seed(0)
        torch.save(SimpleVAE().state_dict(), d / "seed.pt")
        return ModelSource(checkpoint=d / "seed.pt"), options, None
    import diffusers

    torch.manual_seed(0)
    name, config = ("AutoencoderTiny", TINY_TAESD_CONFIG) if family == "tiny" else ("AutoencoderKL", TINY_KL_CONFIG)
    model_dir = d / f"{name}-model"
    if not (model_dir / "config.json").is_file():
        getattr(diffusers, name)(**config).save_pretrained(model_dir)
    sizes = ((64, 64), (128, 128)) if family == "tiny" else ((64, 64), (32, 48))  # KL: within its .pte bounds
    return (ModelSource(checkpoint=model_dir, model_ref=f"diffusers:{name}"),
            ExportOptions(variants=VARIANTS, dynamic_size=True), sizes)


def run_family(family: str, work: Path, reuse: bool = False) -> dict[str, Any]:
    from vae_export.manifest import Manifest
    from vae_export.options import VerifyOptions
    from vae_export.pipeline import export_into, verify_artifacts

    d = work / family
    source, options, sizes = prepare(family, d)
    previous = d / "export.json"
    if reuse and previous.is_file():  # --reuse: the export of an earlier run
        out: dict[str, Any] = json.loads(previous.read_text())
    else:
        started = time.perf_counter()
        exported = export_into(d, source, options)
        out = {"family": family, "export_s": time.perf_counter() - started, "failed": exported.failed}
        previous.write_text(json.dumps(out))
    manifest = Manifest.read(d)
    out["files"] = {e.file: {"bytes": e.bytes, "bounds": e.bounds, "executorch": e.executorch}
                    for e in manifest.artifacts}
    if not any(e.file.endswith(".pte") for e in manifest.artifacts):
        return out
    started = time.perf_counter()
    report = verify_artifacts(d, source, VerifyOptions(batch_sizes=(1, 3, 64), sizes=sizes))
    out["verify_s"] = time.perf_counter() - started
    out["verify_passed"] = report.passed
    out["checks"] = [c.to_json() for c in report.checks if c.file.endswith(".pte")]
    return out


def parity_rows(result: dict[str, Any]) -> list[str]:
    """Markdown rows: graph, size, max abs at batch 1, 3, 64 (worst output, random/image inputs)."""
    worst: dict[tuple[str, str], dict[int, float]] = {}
    for c in result["checks"]:
        if c["variant"] != "executorch" or c["input"] == "edge":
            continue
        size = "x".join(map(str, c["size"])) if c.get("size") else "28x28"
        cell = worst.setdefault((c["graph"], size), {})
        cell[c["batch"]] = max(cell.get(c["batch"], 0.0), c["max_abs"])
    edge = max((c["max_abs"] for c in result["checks"] if c["variant"] == "executorch" and c["input"] == "edge"),
               default=None)
    rows = []
    for (graph, size), cells in worst.items():
        rows.append(f"| {result['family']} | {graph} | {size} | "
                    + " | ".join(f"{cells[b]:.1e}" if b in cells else "" for b in (1, 3, 64)) + " |")
    if edge is not None:
        rows.append(f"| {result['family']} | (edge inputs, all graphs) | | | | {edge:.1e} |")
    return rows


def int8_row(result: dict[str, Any]) -> str:
    rows = [c for c in result["checks"] if c["variant"] == "executorch-int8"]
    psnr = [c["psnr_db"] for c in rows if c["graph"] == "decoder" and c["input"] == "random"]
    edge_psnr = [c["psnr_db"] for c in rows if c["graph"] == "decoder" and c["input"] == "edge"]
    mu = [c["max_abs"] for c in rows if c["output"] == "mu" and c["input"] != "edge"]
    mu_edge = [c["max_abs"] for c in rows if c["output"] == "mu" and c["input"] == "edge"]
    files = result["files"]

    def worst(values: list[float], pick: Any, spec: str) -> str:
        return format(pick(values), spec) if values else "(not lowered)"

    return (f"| {result['family']} | {worst(psnr, min, '.1f')} | {worst(edge_psnr, min, '.1f')} | "
            f"{worst(mu, max, '.3f')} | {worst(mu_edge, max, '.3f')} | "
            f"{all(c['passed'] for c in rows)} | {files.get('decoder.int8.pte', {}).get('bytes', 0):,} | "
            f"{files.get('decoder.pte', {}).get('bytes', 0):,} |")


def size_rows(result: dict[str, Any]) -> list[str]:
    files = result["files"]
    rows = []
    for graph in ("encoder", "decoder", "classifier"):
        if f"{graph}.onnx" not in files:
            continue
        cells = [files.get(name, {}).get("bytes") for name in
                 (f"{graph}.onnx", f"{graph}.ort", f"{graph}.pte", f"{graph}.int8.pte")]
        pte = files.get(f"{graph}.pte", {})
        facts = pte.get("executorch") or {}
        bounds = pte.get("bounds") or {}
        first = next(iter(bounds.values()), None)
        ops = ", ".join(op.split("::")[-1] for op in facts.get("undelegated_ops", [])) or "none"
        rows.append(f"| {result['family']} | {graph} | " + " | ".join(f"{c:,}" if c else "-" for c in cells)
                    + f" | {first} | {facts.get('planned_bytes', 0) / 2**20:.2f} MiB | {ops} |")
    return rows


def bench(work: Path, family: str, sizes: str | None) -> tuple[str, list[dict[str, Any]]]:
    d = work / family
    command = [str(Path(sys.executable).parent / "vae-export"), "bench", "--artifacts", str(d),
               "--engine", "executorch", "--engine", "onnxruntime", "--engine", "torch", "--batch-sizes", "1,64",
               "--json", str(d / "bench-et.json"), "--quiet"]
    if sizes:
        command += ["--sizes", sizes]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return " ".join(command[1:]), json.loads((d / "bench-et.json").read_text())["results"]


def latency_rows(family: str, results: list[dict[str, Any]]) -> list[str]:
    rows = []
    for graph in ("decoder", "encoder"):
        for batch in (1, 64):
            cell = {(r["engine"], r["variant"]): r["p50_ms"] * 1e3 for r in results
                    if r["graph"] == graph and r["batch"] == batch}
            et, et8, ort, torch_ = (cell.get(k) for k in (("executorch", "executorch"),
                                                          ("executorch", "executorch-int8"),
                                                          ("onnxruntime", "fp32"), ("torch", "fp32")))
            if et is None:
                continue
            rows.append(f"| {family} | {graph} | {batch} | {et:,.1f} | {et8:,.1f} | {ort:,.1f} | {torch_:,.1f} | "
                        f"{et / ort:.2f} | {torch_ / et:.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/et-results"))
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-bench", action="store_true")
    parser.add_argument("--reuse", action="store_true", help="keep the exports of an earlier run in --work")
    args = parser.parse_args()
    results = []
    for family in args.families.split(","):
        print(f"== {family}", file=sys.stderr, flush=True)
        results.append(run_family(family, args.work, args.reuse))
        print(json.dumps({k: v for k, v in results[-1].items() if k != "checks"}, default=str)[:2000],
              file=sys.stderr, flush=True)
    benches = {}
    if not args.no_bench:
        for family, sizes in (("mlp", None), ("conv", "28x28")):
            if family in args.families.split(","):
                benches[family] = bench(args.work, family, sizes)
    print("\n### Parity: fp32 .pte vs PyTorch (max abs, worst output)\n")
    print("| model | graph | size | batch 1 | batch 3 | batch 64 |\n| --- | --- | --- | ---: | ---: | ---: |")
    for r in results:
        if r.get("checks"):
            print("\n".join(parity_rows(r)))
    print("\n### int8\n")
    print("| model | decoder PSNR (dB, worst) | edge z PSNR | encoder mu max abs | mu, all-0/all-1 images | passed "
          "| decoder.int8.pte | decoder.pte |\n| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    for r in results:
        if r.get("checks"):
            print(int8_row(r))
    print("\n### Files\n")
    print("| model | graph | .onnx | .ort | .pte | .int8.pte | bounds (first input) | planned | outside XNNPACK |\n"
          "| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | --- |")
    for r in results:
        print("\n".join(size_rows(r)))
    for r in results:
        if r["failed"]:
            print(f"\n{r['family']}: failed: {r['failed']}")
    if benches:
        print("\n### Latency (p50, microseconds)\n")
        print("| model | graph | batch | ExecuTorch | ExecuTorch int8 | ONNX Runtime | torch eager | ET / ORT | "
              "torch / ET |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for family, (command, rows) in benches.items():
            print("\n".join(latency_rows(family, rows)))
        for family, (command, _) in benches.items():
            print(f"\n{family}: {command}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "bench": {k: v[1] for k, v in benches.items()}},
                                        indent=1, default=str))


if __name__ == "__main__":
    main()
