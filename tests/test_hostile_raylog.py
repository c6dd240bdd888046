"""Ray's own log lines stay off the user's terminal unless --verbose (issue 28): a job on the Ray
engine that succeeds prints nothing on stderr, one that fails prints exactly its one `Error:`
line, and `serve` prints none of Ray Serve's lines. Real processes, each starting its own local
Ray (what a user runs): Ray's native core worker writes to file descriptor 2, which click's test
runner cannot see."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import urllib.request

import numpy as np
import pytest

from conftest import free_port


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("VAE_EXPORT_DEBUG", "RAY_ADDRESS")}


def _job(*args: object, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vae_export", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=_env())


@pytest.fixture
def inputs(tmp_path, digits):
    x = digits.test.numpy()[:40].copy()
    np.save(tmp_path / "good.npy", x)
    x[7, 0, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", x)
    return tmp_path


def test_a_successful_ray_job_prints_no_ray_line(inputs, exported_dir):
    """--workers 3 for a job of one batch: Ray Data warns (a UserWarning) that the pool is larger
    than its input, which the CLI would show after the job."""
    out = inputs / "o.parquet"
    proc = _job("encode", inputs / "good.npy", "-o", out, "--artifacts", exported_dir, "--engine", "ray",
                "--workers", 3)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.startswith("encode: 40 rows in ") and "ray engine" in proc.stdout
    assert len(proc.stdout.splitlines()) == 1, proc.stdout


def test_a_failing_ray_job_prints_exactly_its_error_line(inputs, exported_dir):
    out = inputs / "o.parquet"
    proc = _job("score", inputs / "nan.npy", "-o", out, "--artifacts", exported_dir, "--engine", "ray",
                "--workers", 1)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"Error: 1 of 40 rows failed; their reasons are in the error column of {out}"]


def test_verbose_shows_rays_lines(inputs, exported_dir):
    proc = _job("score", inputs / "nan.npy", "-o", inputs / "o.parquet", "--artifacts", exported_dir,
                "--engine", "ray", "--workers", 1, "--verbose")
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[-1].startswith("Error: 1 of 40 rows failed")
    assert any("Dataset" in line or "core_worker" in line for line in lines[:-1]), proc.stderr


def test_serve_prints_no_ray_serve_line(exported_dir):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vae_export", "serve", "--artifacts", str(exported_dir),
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**_env(), "PYTHONUNBUFFERED": "1"})
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 180)  # its one line says it is up
        assert ready, "serve did not come up"
        first = proc.stdout.readline()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as response:
            assert response.status == 200
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert [first.rstrip("\n"), *stdout.splitlines()] == [
        f"serving {exported_dir} on http://127.0.0.1:{port} (1 replica(s), max batch 16, wait 2 ms); Ctrl-C stops it"]
