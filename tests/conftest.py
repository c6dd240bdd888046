"""Shared fixtures: a briefly trained reference VAE on the embedded digits, its checkpoint,
and session-scoped exported artifacts (fp32, and every variant)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from vae_export.checkpoint import save_checkpoint
from vae_export.data import load_digits
from vae_export.train import TrainConfig, train

MNIST_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mnist"
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
    from vae_export.checkpoint import load_model
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
    from vae_export.checkpoint import load_model
    from vae_export.export import export

    d = tmp_path_factory.mktemp("variants")
    shutil.copy(trained_dir / "vae.safetensors", d / "vae.safetensors")
    export(load_model(d / "vae.safetensors"), d, variants=("int8", "int8-static", "fp16", "ort"),
           calibration=digits.train.numpy())
    return d


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def snapshot(directory: Path) -> dict[str, bytes]:
    """Every file under a directory with its bytes: to prove nothing was written or changed."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


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
