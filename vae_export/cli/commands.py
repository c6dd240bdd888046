"""The built-in commands: train, export, verify, bench, sample, inspect, web, run. Each parses
its options into the dataclasses of `vae_export.options`, calls one library function
(`vae_export.pipeline`) and formats what it returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from vae_export.artifacts import CHECKPOINT_NAME
from vae_export.cli.group import main
from vae_export.cli.options import (Finite, Sizes, arch_option, artifacts_option,
                                    batch_sizes_option, conditional_option, dataset_options, device_option,
                                    json_option, model_options, progress, quiet_option, sizes_option, write_json)
from vae_export.errors import UsageError
from vae_export.limits import (MAX_BATCH, MAX_ITERATIONS, MAX_LABELS, MAX_MIN_TIME_S, MAX_ROUNDS, MAX_SEED, MAX_THREADS,
                               MAX_WIDTH)
from vae_export.options import (DEFAULT_OPSET, EXPORTERS, AgainstOptions, BenchOptions, ExportOptions, ModelSource,
                                RunOptions, TrainOptions, VerifyOptions)
from vae_export.variants import LISTED_VARIANTS, PTE_VARIANTS, VARIANTS


# ---- train ------------------------------------------------------------------------------------

@main.command()
@artifacts_option
@dataset_options
@arch_option
@click.option("--epochs", type=click.IntRange(min=1), help="Default: 100 for digits, 40 for mnist/fashion-mnist.")
@click.option("--batch-size", type=click.IntRange(1, MAX_BATCH), default=TrainOptions.batch_size, show_default=True)
@click.option("--lr", type=Finite(min=0, min_open=True), default=TrainOptions.lr, show_default=True,
              help="Peak learning rate of the one-cycle schedule (Adam).")
@click.option("--latent-dim", type=click.IntRange(1, MAX_WIDTH), default=TrainOptions.latent_dim, show_default=True)
@click.option("--hidden-dim", type=click.IntRange(1, MAX_WIDTH), default=TrainOptions.hidden_dim, show_default=True)
@click.option("--beta", type=Finite(min=0), default=TrainOptions.beta, show_default=True, help="KL weight in training.")
@click.option("--channels", type=click.IntRange(1, 1024), default=TrainOptions.channels, show_default=True,
              help="conv: convolution width.")
@click.option("--latent-channels", type=click.IntRange(1, 1024), default=TrainOptions.latent_channels,
              show_default=True, help="conv: channels of the spatial latent.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@conditional_option
@click.option("--labels", "labels", type=click.IntRange(min=1, max=MAX_LABELS),
              help="Semi-supervised (Kingma et al. 2014, M2): train with this many labelled images (balanced "
                   "per class, chosen by --seed) and the rest unlabelled; adds classifier.onnx. Default epochs: "
                   "25 for mnist/fashion-mnist.")
@quiet_option
def train(artifacts: Path, dataset: str, data_dir: Path | None, download: bool, arch: str, epochs: int | None,
          batch_size: int, lr: float, latent_dim: int, hidden_dim: int, beta: float, channels: int,
          latent_channels: int, seed: int, conditional: bool, labels: int | None, quiet: bool) -> None:
    """Train the reference VAE; writes vae.safetensors and train_metrics.json.

    The reported test loss is the negative ELBO in nats per image (one sampled z, KL weight
    1), the figure papers quote; for conditional and semi-supervised models, with the true
    labels. Semi-supervised training also reports the classifier's test error, and that of
    the same classifier trained on the labelled images alone.

    \b
    Example:
        vae-export train --dataset mnist --data-dir ~/data/mnist
        vae-export train --arch conv
        vae-export train --conditional
        vae-export train --dataset mnist --data-dir ~/data/mnist --labels 100
    """
    from vae_export.pipeline import train_into

    options = TrainOptions(dataset=dataset, data_dir=data_dir, download=download, arch=arch, epochs=epochs,
                           batch_size=batch_size, lr=lr, latent_dim=latent_dim, hidden_dim=hidden_dim, beta=beta,
                           channels=channels, latent_channels=latent_channels, seed=seed, conditional=conditional,
                           labels=labels)
    metrics = train_into(artifacts, options, progress(quiet))
    click.echo(f"final test loss {metrics['final_test_loss']:.2f} nats/image on {dataset} "
               f"({len(metrics['epochs'])} epochs, {metrics['wall_time_s']:.1f} s); "
               f"wrote {artifacts / CHECKPOINT_NAME}")
    if "test_error" in metrics:
        click.echo(f"test error {100 * metrics['test_error']:.2f} % with {metrics['labelled_images']} labels "
                   f"(the classifier alone on them: {100 * metrics['baseline_test_error']:.2f} %)")


# ---- export -----------------------------------------------------------------------------------

@main.command("export")
@artifacts_option
@model_options
@click.option("--opset", type=click.IntRange(min=14, max=23), default=DEFAULT_OPSET, show_default=True)
@click.option("--exporter", type=click.Choice(EXPORTERS), default=ExportOptions.exporter, show_default=True,
              help="torch.onnx exporter; torchscript is deprecated by PyTorch.")
@click.option("--variant", "variants", multiple=True, type=click.Choice(VARIANTS),
              help="Also write encoder.<variant>.onnx / decoder.<variant>.onnx (repeatable); executorch and "
                   "executorch-int8 write encoder.pte / decoder.pte and *.int8.pte (pip install "
                   "'vae-export[executorch]').")
@click.option("--dynamic-size", is_flag=True,
              help="Symbolic height and width (fully convolutional models; refused for a model that does not run "
                   "at a second size).")
def export_command(artifacts: Path, checkpoint: Path | None, model_ref: str | None, image_shape: Any,
                   opset: int, exporter: str, variants: tuple[str, ...], dynamic_size: bool) -> None:
    """Split the VAE and export encoder.onnx and decoder.onnx (+ manifest.json).

    Graphs: encoder x [batch, C, H, W] -> mu, logvar [batch, *latent]; decoder
    z [batch, *latent] -> x_hat [batch, C, H, W]; the latent is flat ([32]) or spatial
    ([4, 7, 7]). With --dynamic-size, H and W (and the latent's h, w) are symbolic. Each graph
    is checked (ONNX checker, strict shape inference, ONNX Runtime at batch 1 and 3, and a
    second size) before anything replaces the old artifacts.

    \b
    Examples:
        vae-export export
        vae-export export --checkpoint seed_vae.pt --variant int8
        vae-export export --model mypkg.models:ConvVAE --checkpoint conv.safetensors
        vae-export export --dynamic-size
    """
    if exporter == "torchscript":
        click.echo("note: the TorchScript exporter is deprecated by PyTorch; prefer the default dynamo", err=True)
    from vae_export.pipeline import export_into

    source = ModelSource(checkpoint=checkpoint, model_ref=model_ref, image_shape=image_shape)
    result = export_into(artifacts, source, ExportOptions(opset=opset, exporter=exporter, variants=variants,
                                                          dynamic_size=dynamic_size))
    for entry in result.manifest.artifacts:
        click.echo(f"{entry.file:<28} {entry.bytes:>10,} bytes  sha256 {entry.sha256[:12]}")
    for path in result.removed:
        click.echo(f"removed {path.name} (from the previous export, not rebuilt by this one)")
    click.echo(f"exported {len(result.files)} files in {result.seconds:.1f} s; manifest {artifacts / 'manifest.json'}")
    result.raise_if_failed()  # a variant that did not lower: exit 1, the rest is in place


# ---- verify -------------------------------------------------------------------------------------

@main.command()
@artifacts_option
@model_options
@batch_sizes_option(VerifyOptions.batch_sizes)
@sizes_option
@click.option("--atol", type=Finite(min=0), default=VerifyOptions.atol, show_default=True, help="fp32 absolute tolerance.")
@click.option("--rtol", type=Finite(min=0), default=VerifyOptions.rtol, show_default=True, help="fp32 relative tolerance.")
@device_option
@click.option("--engine", "engines", multiple=True, metavar="NAME[:PRECISION]",
              help="Check the graphs on this engine (repeatable; default: each file on the engine that runs it, "
                   "onnxruntime for .onnx/.ort, executorch for .pte): any registered engine that runs the exported "
                   "graphs, e.g. openvino or onnxruntime-openvino (pip install vae-export[peers]); NAME:bf16 checks a "
                   "reduced precision on PSNR (openvino:bf16, torch:bf16).")
@json_option
@quiet_option
def verify(artifacts: Path, checkpoint: Path | None, model_ref: str | None, image_shape: Any,
           batch_sizes: tuple[int, ...], sizes: Any, atol: float, rtol: float, device: str, engines: tuple[str, ...],
           json_path: Path | None, quiet: bool) -> None:
    """Compare ONNX Runtime with PyTorch for every graph and variant; exit 1 on any mismatch.

    \b
    First every artifact's sha256 must match the manifest. Then, per graph, variant,
    output and batch size, an element fails when
        |onnx - torch| > atol + rtol * |torch|
    and NaN or Inf in an output always fails. fp32 graphs pass on --atol/--rtol.
    Reduced-precision variants (fp16, int8, int8-static, executorch-int8) pass on decoder
    PSNR >= 30 dB against the fp32 PyTorch output (>= 20 dB for the +-4 sigma z) and bounds
    on encoder mu (fp16 atol 1e-2 rtol 1e-2; int8, int8-static and executorch-int8 atol 0.25
    rtol 0.05, atol 0.5 for the all-zero and all-one images). Each file runs on the engine
    that runs it (ExecuTorch for .pte; at the sizes within its exported bounds).
    Inputs: real images (else uniform), all-zero and all-one images; z ~ N(0, I) and z at
    +-4 sigma. min_atol is the smallest atol that would have passed. Graphs exported with
    --dynamic-size are checked at every --sizes size (rows gain "size"). An engine at a
    reduced precision (--engine openvino:bf16, torch:bf16) passes on the reduced rules
    (decoder PSNR; encoder mu atol 0.08 rtol 0.08, 0.25 on the edge images). A pass is
    recorded per engine, precision and file for this CPU: what bench counts as verified.

    \b
    Example:
        vae-export verify --batch-sizes 1,64 --json verify.json
    """
    from vae_export.pipeline import verify_artifacts

    source = ModelSource(checkpoint=checkpoint, model_ref=model_ref, image_shape=image_shape)
    options = VerifyOptions(batch_sizes=batch_sizes, sizes=sizes, atol=atol, rtol=rtol, device=device,
                            engines=engines or VerifyOptions.engines, json_path=json_path)
    report = verify_artifacts(artifacts, source, options, progress(quiet))
    _print_verify(report)
    report.raise_if_failed()


def _print_verify(report: Any) -> None:
    from vae_export.reports import fmt_number
    for name in report.bad_files:
        click.echo(f"INTEGRITY FAIL  {name}: sha256 does not match the manifest")
    if not report.checkpoint["matches_manifest"]:
        click.echo("note: the checkpoint differs from the one the graphs were exported from")
    # The size column tells apart the rows of a symbolic-size graph, checked at several sizes.
    click.echo(f"{'graph':<8} {'variant':<15} {'output':<7} {'size':>9} {'batch':>5} {'input':<7} {'max_abs':>9} "
               f"{'max_rel':>9} {'mean_abs':>9} {'min_atol':>9} {'psnr_db':>8}  result")
    for c in report.checks:
        psnr = "" if c.psnr_db is None else f"{c.psnr_db:.1f}"
        size = f"{c.size[0]}x{c.size[1]}" if c.size else "-"
        click.echo(f"{c.graph:<8} {c.variant:<15} {c.output:<7} {size:>9} {c.batch:>5} {c.input:<7} "
                   f"{fmt_number(c.max_abs):>9} {fmt_number(c.max_rel):>9} {fmt_number(c.mean_abs):>9} "
                   f"{fmt_number(c.min_atol):>9} {psnr:>8}  {'ok' if c.passed else 'FAIL'} ({c.gated_on})")
    t = report.thresholds
    click.echo(f"thresholds: fp32 atol {t['fp32']['atol']:g} rtol {t['fp32']['rtol']:g}; reduced-precision "
               f"decoder PSNR >= {t['reduced']['decoder_psnr_min_db']:g} dB "
               f"(edge z >= {t['reduced']['decoder_edge_psnr_min_db']:g} dB); encoder mu " +
               ", ".join(f"{k} atol {v['atol']:g} rtol {v['rtol']:g}" for k, v in t["reduced"]["encoder_mu"].items()))
    passed = len(report.checks) - len(report.failed)
    click.echo(f"{passed}/{len(report.checks)} checks passed; inputs: {report.inputs['encoder']}, seed {report.inputs['seed']}")


# ---- bench --------------------------------------------------------------------------------------

@main.command()
@artifacts_option
@model_options
@device_option
@batch_sizes_option(BenchOptions.batch_sizes)
@sizes_option
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=BenchOptions.threads, show_default=True,
              help="Intra-op threads for both ONNX Runtime and PyTorch.")
@click.option("--warmup", type=click.IntRange(0, MAX_ITERATIONS), default=BenchOptions.warmup, show_default=True, help="Untimed calls per shape.")
@click.option("--iterations", type=click.IntRange(1, MAX_ITERATIONS), default=BenchOptions.iterations, show_default=True, help="Timed calls per shape.")
@click.option("--min-time", "min_time", type=Finite(0.0, MAX_MIN_TIME_S), default=None, metavar="SECONDS",
              help="Time budget per row: more calls than --iterations until they fill SECONDS (stable p99s for fast "
                   f"rows) [default: {BenchOptions.min_time_s:g}; with --against, per side of each row, "
                   f"{AgainstOptions.min_time_s:g}].")
@click.option("--no-torch", is_flag=True, help="Time ONNX Runtime only (no PyTorch baseline).")
@click.option("--no-peers", is_flag=True, help="Do not time installed peer engines (OpenVINO) nor reduced "
              "precisions: ONNX Runtime and PyTorch eager fp32 only.")
@click.option("--engine", "engines", multiple=True, metavar="NAME[:PRECISION]",
              help="Time exactly these engines (repeatable): onnxruntime, torch, openvino, onnxruntime-openvino, or "
                   "any registered one; NAME:bf16 at bfloat16 where the CPU has it (torch:bf16, openvino:bf16) "
                   "[default: onnxruntime, the installed peers and torch, at every precision they run here].")
@click.option("--recommend", is_flag=True,
              help="Record the recommendation (fastest verified engine, variant and precision per graph, size and "
                   "batch, with this CPU's model and flags) in manifest.json, for the runtime's engine=\"auto\".")
@json_option
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A previous bench --json report; exit 1 when a matching row got slower.")
@click.option("--max-regression", type=Finite(min=1.0), default=None,
              help="Fail when a row is slower than RATIO x the old one [default: "
                   f"{BenchOptions.max_regression:g} with --baseline, {AgainstOptions.max_regression:g} with --against].")
@click.option("--against", type=click.Path(exists=True, file_okay=False, path_type=Path), metavar="OLD_DIR",
              help="A/B gate: time OLD_DIR's artifacts against --artifacts in one run, in paired rounds; "
                   "exit 1 when a row's 95% interval of NEW/OLD lies above --max-regression.")
@click.option("--rounds", type=click.IntRange(1, MAX_ROUNDS), default=None,
              help=f"Alternating rounds per row [default: {BenchOptions.rounds}; {AgainstOptions.rounds} with "
                   "--against, over all session groups].")
@click.option("--sessions", type=click.IntRange(1, MAX_ROUNDS), default=None,
              help=f"With --against: groups of rounds, each with fresh ONNX Runtime sessions of both sides; the "
                   f"interval is over groups [default: {AgainstOptions.sessions}, at least 6, at most --rounds].")
@quiet_option
def bench(artifacts: Path, checkpoint: Path | None, model_ref: str | None, image_shape: Any, device: str,
          batch_sizes: tuple[int, ...], sizes: Any, threads: int, warmup: int, iterations: int, min_time: float,
          no_torch: bool, no_peers: bool, engines: tuple[str, ...], recommend: bool, json_path: Path | None,
          baseline: Path | None, max_regression: float | None,
          against: Path | None, rounds: int | None, sessions: int | None, quiet: bool) -> None:
    """Latency and throughput of every graph and variant: ONNX Runtime against PyTorch.

    Each call is timed on its own (perf_counter_ns) after warm-up; p50/p90/p99/mean in ms,
    throughput in samples/s at p50. speedup = PyTorch p50 / the row's p50. Installed peer
    engines (OpenVINO: pip install vae-export[peers]) run the fp32 graph in the same rounds.
    Graphs exported with --dynamic-size are timed at every --sizes size; the table shows the
    time per megapixel. Memory per row (MiB): "peak" is the call's peak RSS above its loaded
    session (VmHWM, reset before each measured call), "session" the session's own size.
    "ok" marks rows verified on this CPU (verify --engine NAME[:PRECISION] passed) and
    matching PyTorch fp32 in this run; the table ends with the fastest such row per graph,
    size and batch (--recommend records it for the runtime's engine="auto").

    With --against OLD_DIR: the A/B latency gate for CI (docs/ci.md). Both artifact sets
    run in one process in paired rounds; per row the median ratio NEW/OLD, its 95%
    interval and a verdict: regressed (interval above --max-regression, exit 1), improved,
    ok or inconclusive.

    \b
    Examples:
        vae-export bench --json bench.json
        vae-export bench --baseline ci/baseline.json --max-regression 1.5
        vae-export bench --artifacts new --against old --batch-sizes 1,64 --json ab.json
    """
    if sessions is not None and against is None:
        raise UsageError("--sessions: only with --against (plain bench opens one session per engine)")
    if against is not None:
        if baseline is not None:
            raise UsageError("--against and --baseline: expected one of them, found both")
        return _bench_against(artifacts, against, AgainstOptions(
            device=device, batch_sizes=batch_sizes, threads=threads, warmup=warmup, iterations=iterations,
            rounds=_given(rounds, AgainstOptions.rounds), sessions=_given(sessions, AgainstOptions.sessions),
            min_time_s=_given(min_time, AgainstOptions.min_time_s),
            max_regression=_given(max_regression, AgainstOptions.max_regression), json_path=json_path), quiet)
    from vae_export.pipeline import bench_artifacts

    source = ModelSource(checkpoint=checkpoint, model_ref=model_ref, image_shape=image_shape)
    options = BenchOptions(device=device, batch_sizes=batch_sizes, threads=threads, warmup=warmup,
                           iterations=iterations, min_time_s=_given(min_time, BenchOptions.min_time_s),
                           with_torch=not no_torch, sizes=sizes, peers=not no_peers, engines=engines,
                           json_path=json_path, baseline=baseline,
                           max_regression=_given(max_regression, BenchOptions.max_regression),
                           rounds=_given(rounds, BenchOptions.rounds), recommend=recommend)
    outcome = bench_artifacts(artifacts, source, options, progress(quiet))
    _print_bench(outcome.report)
    gate = outcome.gate
    if gate is not None:
        _print_gate(gate)
        for row in gate.unmatched:
            click.echo(f"no baseline row for {row.label()} threads {row.threads} (not failed)")
        for reg in gate.regressions:
            click.echo(f"REGRESSION {reg.row.label()}: p50 {reg.row.p50_ms:.4f} ms vs baseline "
                       f"{reg.baseline_p50_ms:.4f} ms ({reg.ratio:.2f}x)")
        gate.raise_if_failed()
        click.echo(_gate_summary(gate, baseline))


def _gate_summary(gate: Any, baseline: Path) -> str:
    """The last line of a passed --baseline gate: what was compared and what the verdicts
    were. Inconclusive rows are counted as such, never as "within" the threshold."""
    from vae_export import abtest

    if not gate.compared:
        return f"regression gate passed: no row matched {baseline}, so nothing was compared"
    if gate.rows is None:  # a baseline without per-round samples: the p50 rule, each row within R
        return f"regression gate passed: {gate.compared} rows within {gate.max_regression:g}x of {baseline}"
    counts = {v: sum(r["verdict"] == v for r in gate.rows) for v in (abtest.OK, abtest.IMPROVED, abtest.INCONCLUSIVE)}
    parts = [f"{n} {v}" for v, n in counts.items() if n]
    if counts[abtest.INCONCLUSIVE]:
        parts[-1] += (f" (the interval straddles {gate.max_regression:g}x or {1 / gate.max_regression:.3g}x: "
                      "these runs cannot tell)")
    return f"regression gate passed: no row regressed; {', '.join(parts)} of {gate.compared} rows against {baseline}"


def _given(value: Any, default: Any) -> Any:
    """An option's value, or the library's default when it was not given (0 is a value)."""
    return default if value is None else value


def _bench_against(artifacts: Path, old: Path, options: Any, quiet: bool) -> None:
    from vae_export import abtest
    from vae_export.pipeline import bench_against

    report = bench_against(artifacts, old, options, progress(quiet))
    click.echo(f"{artifacts} (new) against {old} (old), one process, {report.rounds} paired rounds a row "
               f"in {report.sessions} groups of fresh sessions; "
               f"{report.env['cpu']} | threads {options.threads}")
    for row in report.results:
        click.echo(abtest.verdict_line(row, options.max_regression))
    for name in report.unmatched:
        click.echo(f"not compared: {name}")
    report.raise_if_failed()
    counts = ", ".join(f"{n} {v}" for v, n in report.counts.items() if n)
    click.echo(f"latency gate passed: {counts} ({len(report.results)} rows)")


def _print_gate(gate: Any) -> None:
    """The statistical verdicts of a --baseline comparison, when both runs carry round samples."""
    from vae_export import abtest

    if gate.machines is None:
        return
    click.echo(abtest.describe_machines(gate.machines, gate.max_regression))
    for row in gate.rows:
        click.echo(abtest.verdict_line(row, gate.max_regression))


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _print_bench(report: Any) -> None:
    from vae_export.recommend import is_candidate

    env = report.env
    load = env.get("load_average")
    click.echo(f"{env['cpu']} | {env['cores']} cores | threads {env['threads']} | onnxruntime {env['onnxruntime']} "
               f"| torch {env['torch']} | device {env['device']}" + (f" | load {load[0]:.1f}" if load else ""))
    click.echo(f"{'graph':<8} {'variant':<15} {'engine':<22} {'size':>9} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} "
               f"{'p99 ms':>9} {'samples/s':>11} {'ms/Mpx':>8} {'speedup':>8} {'peak MiB':>9} {'sess MiB':>9} "
               f"{'PSNR':>6} {'ok':>3} {'calls':>6}")
    for r in report.results:
        speed = "" if r.speedup_vs_torch is None else f"{r.speedup_vs_torch:.2f}x"
        size = f"{r.size[0]}x{r.size[1]}" if r.size else "-"
        per_mpx = r.megapixel_ms(env.get("image_shape"))
        psnr = "" if r.psnr_db is None else f"{min(r.psnr_db, 999):.1f}"
        click.echo(f"{r.graph:<8} {r.variant:<15} {r.engine_label:<22} {size:>9} {r.batch:>5} {r.p50_ms:>9.4f} "
                   f"{r.p90_ms:>9.4f} {r.p99_ms:>9.4f} {r.throughput_per_s:>11,.0f} "
                   f"{per_mpx or 0:>8.3f} {speed:>8} {_mib(r.peak_mib):>9} {_mib(r.session_mib):>9} {psnr:>6} "
                   f"{'yes' if is_candidate(r) else 'no':>3} {r.iterations:>6}")
    _print_recommendations(report)


def _print_recommendations(report: Any) -> None:
    """The fastest verified (engine, variant, precision) per graph, size and batch."""
    if not report.recommendations:
        return
    noise = report.noise
    click.echo("recommended (fastest verified; run noise "
               + ("n/a" if noise is None else f"+-{100 * noise:.1f}%") + "):")
    for e in report.recommendations:
        where = f"{e['graph']} {e['size'][0]}x{e['size'][1]}" if e["size"] else e["graph"]
        rec = e.get("recommended")
        if rec is None:
            click.echo(f"  {where} batch {e['batch']}: none ({e['reason']})")
            continue
        label = rec["engine"] + ("" if rec["precision"] == "fp32" else f":{rec['precision']}")
        parts = [f"{label} {rec['variant']} {rec['p50_ms']:.4g} ms"]
        if e["runner_up"]:
            up = e["runner_up"]
            up_label = up["engine"] + ("" if up["precision"] == "fp32" else f":{up['precision']}")
            tie = " (within noise)" if e["within_noise"] else ""
            parts.append(f"{e['margin_over_runner_up']:.2f}x over {up_label} {up['variant']}{tie}")
        if e["speedup_vs_torch"]:
            parts.append(f"{e['speedup_vs_torch']:.2f}x PyTorch eager fp32")
        fp32 = e.get("fastest_fp32")
        if fp32 and fp32 != rec and e.get("fp32_speedup_vs_torch"):
            parts.append(f"fastest fp32: {fp32['engine']} {e['fp32_speedup_vs_torch']:.2f}x PyTorch")
        if e["faster_unverified"]:
            parts.append("faster but not verified: " + ", ".join(e["faster_unverified"]))
        click.echo(f"  {where} batch {e['batch']}: " + "; ".join(parts))


# ---- sample / inspect -------------------------------------------------------------------------

@main.command()
@artifacts_option
@click.option("-n", "count", type=click.IntRange(min=1, max=4096), default=64, show_default=True, help="Images to sample.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--variant", type=click.Choice(LISTED_VARIANTS), default="fp32", show_default=True,
              help="Which decoder variant to use.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="PNG path (default ARTIFACTS/samples.png).")
@click.option("--size", "size", type=Sizes(), metavar="HxW",
              help="Image size, for a decoder exported with --dynamic-size (default: its export size).")
@click.option("--temperature", type=Finite(min=0, min_open=True, max=10), default=1.0, show_default=True,
              help="Scale of the prior: z ~ N(0, T^2 I); below 1 gives typical images, 1 the prior itself.")
@click.option("--label", type=click.IntRange(min=0), help="Conditional decoders: sample this class.")
@click.option("--per-class", is_flag=True, help="Conditional decoders: one row of -n images per class.")
def sample(artifacts: Path, count: int, seed: int, variant: str, output: Path | None, size: Any, temperature: float,
           label: int | None, per_class: bool) -> None:
    """Decode z ~ N(0, T^2 I) into a PNG grid, with the torch-free runtime.

    A conditional decoder needs its class: --label K, or --per-class for a grid with one row
    per class.

    \b
    Example:
        vae-export sample -n 16 --seed 1 --output grid.png
        vae-export sample -n 10 --per-class --temperature 0.5
    """
    from vae_export.pictures import sample_png

    if size is not None and len(size) != 1:
        raise click.BadParameter(f"expected one size HxW, found {len(size)}", param_hint="--size")
    path = sample_png(artifacts, count, seed, variant, output, size[0] if size else None, temperature=temperature,
                      label=label, per_class=per_class)
    click.echo(f"wrote {path}")


@main.command()
@click.argument("onnx_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
def inspect(onnx_file: Path, json_path: Path | None) -> None:
    """Show an .onnx file's signature, opset, metadata, size and op counts (.ort: signature and metadata;
    .pte: signature, bounds and metadata, with pip install 'vae-export[executorch]').

    \b
    Example:
        vae-export inspect artifacts/decoder.onnx --json decoder.json
    """
    from vae_export.onnxinfo import describe

    info = describe(onnx_file)
    write_json(json_path, info)
    if info.get("format") == "ort":
        click.echo(f"{info['file']}  {info['bytes']:,} bytes  ORT format")
    elif info.get("format") == "pte":
        click.echo(f"{info['file']}  {info['bytes']:,} bytes  ExecuTorch program (XNNPACK); bounds are the largest "
                   "shapes it accepts")
    else:
        click.echo(f"{info['file']}  {info['bytes']:,} bytes  opset {info['opset']}  ir {info['ir_version']}  {info['producer']}")
    for kind in ("inputs", "outputs"):
        for v in info[kind]:
            bounds = f"  bounds [{', '.join(map(str, v['bounds']))}]" if "bounds" in v else ""
            click.echo(f"  {kind[:-1]:<6} {v['name']:<8} {v['dtype']:<8} [{', '.join(map(str, v['shape']))}]{bounds}")
    for key, value in info["metadata"].items():
        click.echo(f"  meta   {key} = {value}")
    if "ops" in info:
        click.echo(f"  params {info['parameters']:,} in {info['initializers']} initializers")
        click.echo("  ops    " + ", ".join(f"{k} x{v}" for k, v in info["ops"].items()))


# ---- web --------------------------------------------------------------------------------------

@main.command()
@artifacts_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("site"), show_default=True,
              help="Directory for the static site.")
@click.option("--variant", type=click.Choice([v for v in LISTED_VARIANTS if v not in PTE_VARIANTS]), default="fp32",
              show_default=True, help="Which decoder variant to ship (ONNX: the page runs onnxruntime-web).")
@click.option("--ort-web", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="An installed onnxruntime-web package (default: npm install it once into the cache).")
@click.option("--size", type=Sizes(), metavar="HxW",
              help="Image size, for a decoder exported with --dynamic-size (default: its export size).")
def web(artifacts: Path, out: Path, variant: str, ort_web: Path | None, size: Any) -> None:
    """Write a static page that runs decoder.onnx in the browser (onnxruntime-web).

    A grid of samples, sliders for the first latent dimensions that redraw live, a random
    button, an animated interpolation, and the decode latency measured in the browser.
    Serve the folder with any static server.

    \b
    Example:
        vae-export web --out site && python -m http.server -d site 8000
    """
    from vae_export.web import build_site

    if size is not None and len(size) != 1:
        raise click.BadParameter(f"expected one size HxW, found {len(size)}", param_hint="--size")
    files = build_site(artifacts, out, ort_web, variant, size[0] if size else None)
    click.echo(f"wrote {len(files)} files to {out}; serve it with: python -m http.server -d {out} 8000")


# ---- run --------------------------------------------------------------------------------------

@main.command()
@artifacts_option
@dataset_options
@click.option("--epochs", type=click.IntRange(min=1), help="Default: 100 for digits, 40 for mnist/fashion-mnist.")
@click.option("--seed", type=click.IntRange(0, MAX_SEED), default=0, show_default=True)
@click.option("--variant", "variants", multiple=True, type=click.Choice(VARIANTS),
              help="Also export, verify and time these variants (repeatable).")
@arch_option
@click.option("--dynamic-size", is_flag=True, help="Export with symbolic height and width (--arch conv).")
@conditional_option
@quiet_option
def run(artifacts: Path, dataset: str, data_dir: Path | None, download: bool, epochs: int | None, seed: int,
        variants: tuple[str, ...], arch: str, dynamic_size: bool, conditional: bool, quiet: bool) -> None:
    """Train on the default dataset, export, verify, benchmark and draw pictures.

    Writes into ARTIFACTS: the checkpoint, both graphs, manifest.json, verify.json,
    bench.json, samples.png, reconstructions.png, interpolation.png and latency.png.

    \b
    Example:
        vae-export run
    """
    from vae_export.pipeline import run as run_pipeline

    options = RunOptions(train=TrainOptions(dataset=dataset, data_dir=data_dir, download=download, epochs=epochs,
                                            seed=seed, arch=arch, conditional=conditional), variants=variants,
                         dynamic_size=dynamic_size)
    result = run_pipeline(artifacts, options, progress(quiet))
    _print_summary(result)
    result.raise_if_failed()


def _print_summary(result: Any) -> None:
    metrics, exported, report = result.metrics, result.exported, result.verify
    click.echo(f"train   {metrics['dataset']}: final test loss {metrics['final_test_loss']:.2f} nats/image "
               f"({metrics['wall_time_s']:.1f} s)")
    click.echo(f"export  {', '.join(e.file for e in exported.manifest.artifacts)} ({exported.seconds:.1f} s)")
    for path in exported.removed:  # the README's promise: what an export removes is named
        click.echo(f"removed {path.name} (from the previous export, not rebuilt by this one)")
    click.echo(f"verify  {len(report.checks) - len(report.failed)}/{len(report.checks)} checks passed")
    for r in result.bench.results:
        if r.engine == "onnxruntime" and r.variant == "fp32" and r.batch in (1, 256):
            size = f" {r.size[0]}x{r.size[1]}" if r.size else ""
            click.echo(f"bench   {r.graph}{size} batch {r.batch}: p50 {r.p50_ms:.4f} ms, "
                       f"{r.throughput_per_s:,.0f} samples/s, {r.speedup_vs_torch:.2f}x PyTorch")
    click.echo(f"images  {', '.join(p.name for p in result.pictures)}")
    click.echo(f"done in {result.seconds:.1f} s; artifacts in {exported.artifacts_dir}")
