import json

import pytest
from PIL import Image

from vae_export.cli import main
from vae_export.options import RunOptions

CORE_COMMANDS = {"train", "export", "verify", "bench", "sample", "inspect", "run", "web",
                 "encode", "score", "generate", "serve", "triton"}


def test_every_command_has_help(runner):
    assert CORE_COMMANDS <= set(main.commands)
    for name, command in main.commands.items():  # every registered command, not a list kept by hand
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example" in result.output and len(command.help) > 40, name


def test_shared_options_have_one_meaning():
    for name in ("train", "export", "verify", "bench", "sample", "run", "web"):
        option = next(p for p in main.commands[name].params if p.name == "artifacts")
        assert option.opts == ["--artifacts"] and str(option.default) == "artifacts"


def test_version(runner):
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and "vae-export" in result.output


def test_unknown_option_is_exit_2(runner):
    result = runner.invoke(main, ["train", "--epochz", "3"])
    assert result.exit_code == 2 and "Error: No such option '--epochz'" in result.output


def test_sample_png(artifacts, runner, tmp_path):
    result = runner.invoke(main, ["sample", "--artifacts", str(artifacts), "-n", "9", "--seed", "2",
                                  "--output", str(tmp_path / "s.png")])
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "s.png") as image:
        assert image.size == ((3 * 30 + 2) * 2, (3 * 30 + 2) * 2) and image.mode == "L"


def test_missing_manifest_is_usage_error(tmp_path, runner):
    result = runner.invoke(main, ["verify", "--artifacts", str(tmp_path)])
    assert result.exit_code == 2
    assert f"Error: {tmp_path / 'manifest.json'}: no manifest" in result.output


@pytest.mark.slow
def test_run_produces_every_file(tmp_path, runner):
    out = tmp_path / "a"
    result = runner.invoke(main, ["run", "--artifacts", str(out), "--epochs", "5"])
    assert result.exit_code == 0, result.output
    for name in ("vae.safetensors", "train_metrics.json", "encoder.onnx", "decoder.onnx", "manifest.json",
                 "verify.json", "bench.json", "samples.png", "reconstructions.png", "interpolation.png", "latency.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    with Image.open(out / "reconstructions.png") as image:
        assert image.size[0] > image.size[1]  # originals beside reconstructions
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parity"]["passed"] is True and manifest["bench"]["p50_ms"]
    assert json.loads((out / "verify.json").read_text())["passed"] is True
    bench = json.loads((out / "bench.json").read_text())
    assert bench["warmup"] == RunOptions().bench.warmup and {"onnxruntime", "torch"} <= {r["engine"] for r in bench["results"]}
    assert "verify  " in result.output and "done in" in result.output


def test_cli_defaults_match_the_library():
    """Every default the CLI shows is the options dataclass's: one owner (vae_export/options.py)."""
    from vae_export.options import DEFAULT_OPSET, BenchOptions, TrainOptions, VerifyOptions

    def default(command, name):
        return next(p for p in main.commands[command].params if p.name == name).default

    def sizes(text):
        return tuple(int(v) for v in text.split(","))

    assert sizes(default("verify", "batch_sizes")) == VerifyOptions.batch_sizes
    assert (default("verify", "atol"), default("verify", "rtol")) == (VerifyOptions.atol, VerifyOptions.rtol)
    assert sizes(default("bench", "batch_sizes")) == BenchOptions.batch_sizes
    assert (default("bench", "warmup"), default("bench", "iterations")) == (BenchOptions.warmup, BenchOptions.iterations)
    # None: BenchOptions' (1.5) with --baseline, AgainstOptions' (1.10) with --against
    assert default("bench", "max_regression") is None and default("bench", "min_time") is None
    assert default("export", "opset") == DEFAULT_OPSET
    for name in ("batch_size", "lr", "latent_dim", "hidden_dim", "channels", "latent_channels"):
        assert default("train", name) == getattr(TrainOptions, name), name


def test_python_dash_m():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "vae_export", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and "vae-export, version" in result.stdout


def test_progress_only_for_a_terminal(capsys):
    from vae_export.progress import Progress

    Progress()("hidden: stderr is not a terminal under pytest")
    Progress(quiet=True, force=None)("hidden: quiet")
    Progress(force=True)("shown")
    assert capsys.readouterr().err == "shown\n"


def test_cli_import_is_light():
    """`vae-export --help` stays instant: the CLI module imports no heavy library."""
    import subprocess
    import sys

    code = ("import sys, vae_export.cli; "
            "print(sorted(m for m in ('torch', 'onnx', 'onnxruntime', 'numpy', 'ray', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_sample_runs_on_the_runtime_without_torch(exported_dir, tmp_path):
    """`vae-export sample` decodes with the torch-free runtime: neither torch nor onnx is imported."""
    import subprocess
    import sys

    code = ("import sys\nfrom vae_export.cli import main\n"
            f"try:\n    main(['sample', '--artifacts', {str(exported_dir)!r}, '-n', '4', '--output', {str(tmp_path / 's.png')!r}])\n"
            "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
            "print(sorted(m for m in ('torch', 'onnx', 'scipy', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]" and (tmp_path / "s.png").stat().st_size > 100
