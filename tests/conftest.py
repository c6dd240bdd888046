"""Shared fixtures: a briefly trained reference VAE on the embedded digits, its checkpoint,
and session-scoped exported artifacts (fp32, and every variant)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import gzip

import numpy as np
import pytest
import torch
from torch import nn
from click.testing import CliRunner

from vae_export.families.reference import save_checkpoint
from vae_export.data import IDX_FILES, load_digits
from vae_export.train import train
from vae_export.training import TrainConfig
from vae_export.variants import PTE_VARIANTS, VARIANTS

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
RUNTIME = Path(__file__).resolve().parents[1] / "runtime"
# Internal errors re-raise in tests so that bugs are never hidden behind a one-line message.
os.environ.setdefault("VAE_EXPORT_DEBUG", "1")


@pytest.fixture(scope="session")
def digits():
    return load_digits()


@pytest.fixture(scope="session")
def trained(digits):
    """The reference architecture, trained for a few seconds: enough for real parity inputs."""
    return train(digits, config=TrainConfig(epochs=30, seed=0)).model


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory, trained) -> Path:
    d = tmp_path_factory.mktemp("trained")
    save_checkpoint(trained, d / "vae.safetensors")
    return d


@pytest.fixture
def checkpoint(tmp_path, trained_dir) -> Path:
    """A fresh copy of the trained checkpoint in its own artifacts directory."""
    shutil.copy(trained_dir / "vae.safetensors", tmp_path / "vae.safetensors")
    return tmp_path / "vae.safetensors"


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory, trained_dir) -> Path:
    """Read-only for tests: copy it (see `artifacts`) before changing anything."""
    from vae_export.families import load_model
    from vae_export.export import export

    d = tmp_path_factory.mktemp("exported")
    shutil.copy(trained_dir / "vae.safetensors", d / "vae.safetensors")
    export(load_model(d / "vae.safetensors"), d)
    return d


@pytest.fixture
def artifacts(tmp_path, exported_dir) -> Path:
    """A private copy of the exported fp32 artifacts (the manifest refers to the checkpoint
    beside it, so the copy is self-contained)."""
    d = tmp_path / "artifacts"
    shutil.copytree(exported_dir, d)
    return d


@pytest.fixture(scope="session")
def variants_dir(tmp_path_factory, trained_dir, digits) -> Path:
    from vae_export.families import load_model
    from vae_export.export import export

    d = tmp_path_factory.mktemp("variants")
    shutil.copy(trained_dir / "vae.safetensors", d / "vae.safetensors")
    # Every ONNX Runtime variant; the ExecuTorch ones have their own tests (test_executorch.py).
    export(load_model(d / "vae.safetensors"), d, variants=tuple(v for v in VARIANTS if v not in PTE_VARIANTS),
           calibration=digits.train.numpy())
    return d


@pytest.fixture(scope="session")
def conv_model(digits):
    """The conv reference architecture, narrow and briefly trained (a spatial latent [4, 7, 7])."""
    from vae_export.model import VAEConfig

    return train(digits, VAEConfig(arch="conv", channels=8), TrainConfig(epochs=3, seed=0)).model


@pytest.fixture(scope="session")
def conv_dir(tmp_path_factory, conv_model) -> Path:
    """Read-only: the conv model exported with --dynamic-size."""
    from vae_export.families import load_model
    from vae_export.export import export

    d = tmp_path_factory.mktemp("conv")
    save_checkpoint(conv_model, d / "vae.safetensors")
    export(load_model(d / "vae.safetensors", dynamic_size=True), d)
    return d


@pytest.fixture(scope="session")
def m2_model(digits):
    """A semi-supervised (M2) MLP on digits with 100 labels: encoder (x, y), decoder (z, y) and
    a classifier, trained for a few seconds."""
    from vae_export.model import VAEConfig

    config = VAEConfig(num_classes=10, classifier=True, class_names=digits.class_names)
    return train(digits, config, TrainConfig(epochs=20, seed=0, labels=100))


@pytest.fixture(scope="session")
def m2_dir(tmp_path_factory, m2_model) -> Path:
    """Read-only: the M2 model exported (three graphs) with its train_metrics.json."""
    from vae_export.artifacts import atomic_write_json
    from vae_export.families import load_model
    from vae_export.export import export

    d = tmp_path_factory.mktemp("m2")
    save_checkpoint(m2_model.model, d / "vae.safetensors")
    atomic_write_json(d / "train_metrics.json", m2_model.metrics)
    export(load_model(d / "vae.safetensors"), d)
    return d


@pytest.fixture(scope="session")
def cond_conv_dir(tmp_path_factory, digits) -> Path:
    """Read-only: a conditional conv model (spatial latent, y as a channel bias), exported
    with --dynamic-size."""
    from vae_export.families import load_model
    from vae_export.export import export
    from vae_export.model import VAEConfig

    config = VAEConfig(arch="conv", channels=8, num_classes=10, class_names=digits.class_names)
    model = train(digits, config, TrainConfig(epochs=3, seed=0)).model
    d = tmp_path_factory.mktemp("cond-conv")
    save_checkpoint(model, d / "vae.safetensors")
    export(load_model(d / "vae.safetensors", dynamic_size=True), d)
    return d


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under a directory with its bytes: to prove nothing was written or changed."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# ---- helpers shared by several test modules (test modules do not import each other) ----

class SimpleVAE(nn.Module):
    """The seed's model, as users have it."""

    def __init__(self, latent_dim=32, hidden=400):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU())
        self.fc_mu = nn.Linear(hidden, latent_dim)
        self.fc_logvar = nn.Linear(hidden, latent_dim)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784), nn.Sigmoid())


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_dir(d: Path, n_train=5, n_test=3, shape=(28, 28), gz=False, label_count=None):
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, *shape)),
        "train_labels": rng.integers(0, 10, label_count or n_train),
        "test_images": rng.integers(0, 256, (n_test, *shape)),
        "test_labels": rng.integers(0, 10, n_test),
    }
    for key, stem in IDX_FILES.items():
        data = idx_bytes(arrays[key])
        (d / (stem + (".gz" if gz else ""))).write_bytes(gzip.compress(data) if gz else data)
    return arrays


def one_line_error(result, *fragments: str) -> str:
    """The CLI's failure promise: exactly one `Error: ...` line on stderr holding each fragment."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for the whole session (scale-out tests): 2 CPUs, no dashboard, a small
    object store, no usage reporting. Jobs and Serve find it already initialised and reuse it."""
    import logging

    import ray

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray's OOM killer acts on the whole host's memory (95 %), which other work on a shared
    # machine can reach; these tests use a few hundred MB, so it must not kill their workers.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 1024**2,
             logging_level=logging.WARNING, log_to_driver=False)
    yield ray
    ray.shutdown()


# ---- diffusers autoencoders (tests/test_diffusers.py): tiny random configs, save_pretrained ----

TINY_KL_CONFIG = dict(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                      up_block_types=("UpDecoderBlock2D",) * 2, layers_per_block=1, norm_num_groups=4,
                      latent_channels=4, sample_size=32, scaling_factor=0.5)
TINY_TAESD_CONFIG = dict(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                         num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)


def _save_pretrained(tmp_path_factory, class_name: str, config: dict) -> Path:
    """A random diffusers model of `class_name`, written by diffusers' own save_pretrained."""
    diffusers = pytest.importorskip("diffusers")
    d = tmp_path_factory.mktemp(class_name)
    torch.manual_seed(0)
    getattr(diffusers, class_name)(**config).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def kl_dir(tmp_path_factory) -> Path:
    """A tiny random AutoencoderKL (stride 2)."""
    return _save_pretrained(tmp_path_factory, "AutoencoderKL", TINY_KL_CONFIG)


@pytest.fixture(scope="session")
def taesd_dir(tmp_path_factory) -> Path:
    return _save_pretrained(tmp_path_factory, "AutoencoderTiny", TINY_TAESD_CONFIG)


def _export_diffusers(tmp_path_factory, name: str, model_dir: Path, *extra: str) -> Path:
    out = tmp_path_factory.mktemp(name.split(":")[1])
    from vae_export.cli import main

    result = CliRunner().invoke(main, ["export", "--model", name, "--checkpoint", str(model_dir),
                                       "--artifacts", str(out), *extra])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="session")
def kl_artifacts(tmp_path_factory, kl_dir) -> Path:
    """Read-only: the tiny AutoencoderKL exported through the real CLI, with fp16 and fp16-mixed."""
    return _export_diffusers(tmp_path_factory, "diffusers:AutoencoderKL", kl_dir, "--variant", "fp16",
                             "--variant", "fp16-mixed")


@pytest.fixture(scope="session")
def taesd_artifacts(tmp_path_factory, taesd_dir) -> Path:
    return _export_diffusers(tmp_path_factory, "diffusers:AutoencoderTiny", taesd_dir)


# ---- the runtime as an app installs it (tests/test_runtime_alone.py, tests/test_readme.py) ----------

def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (servers in tests listen there only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_call(url: str, path: str, body: bytes | dict | None = None, method: str | None = None,
              timeout: float = 60) -> tuple[int, dict, bytes]:
    """(status, lower-cased headers, body) of one request; a 4xx/5xx is an answer, not an error."""
    import json
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
    except urllib.error.HTTPError as error:
        return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()


def serve_on_free_port(config) -> int:
    """Start Serve with `config` on a free 127.0.0.1 port and return the port. A port free when
    picked can be taken before Serve's proxy binds it (Ray's workers take ephemeral ports as
    they start); start_server then says so in a UsageError, and another port is tried."""
    from vae_export.errors import UsageError
    from vae_export.scale.serve import start_server

    for attempt in range(3):
        port = free_port()
        try:
            start_server(config, "127.0.0.1", port)
            return port
        except UsageError as exc:
            if "already in use" not in str(exc) or attempt == 2:
                raise
    raise AssertionError("unreachable")


def run_checked(args: list[str], cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, args))}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def alone_venv(tmp_path_factory) -> Path:
    """The python of a fresh venv holding only the runtime's wheel (with numpy and onnxruntime)
    and pytest."""
    work = tmp_path_factory.mktemp("runtime-alone")
    # Built from a clean copy: setuptools' in-tree build/ could carry modules deleted since.
    source = shutil.copytree(RUNTIME, work / "source", ignore=shutil.ignore_patterns("build", "*.egg-info", "tests",
                                                                                     "__pycache__"))
    run_checked([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"), str(source)],
                work)
    (wheel,) = (work / "dist").glob("vae_export_runtime-*.whl")
    run_checked([sys.executable, "-m", "venv", str(work / "venv")], work)
    python = work / "venv" / "bin" / "python"
    run_checked([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel), "pytest"],
                work)
    return python


@pytest.fixture(scope="session")
def runtime_sets(tmp_path_factory) -> Path:
    """The artifact sets the runtime's own suite runs on (one export per session, shared)."""
    from vae_export.workloads import runtime_fixtures

    return runtime_fixtures(tmp_path_factory.getbasetemp() / "runtime-artifacts")
