"""Hostile inputs and outputs of the batch jobs (encode, score, generate), issue 28: files that
claim more than they hold (IDX headers, .npy shapes, sparse and bomb images, EPS named .png),
counts past their bounds, outputs that are links, special files or interrupted. The promise:
exit 1 or 2 with one `Error:` line, bad rows as error rows (on both engines), nothing clobbered
or half-written, no hang, no memory blow-up. Memory is bounded with RLIMIT_AS in subprocesses;
every subprocess has a timeout, so a hang fails the test instead of stalling the suite."""

from __future__ import annotations

import gzip
import io
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vae_export.cli import main
from vae_export.errors import VAEExportError
from vae_export.idx import read_idx

from conftest import free_port, idx_bytes, one_line_error, snapshot

GIB = 1024**3


@pytest.fixture(scope="module")
def images(digits) -> np.ndarray:
    return (digits.test.numpy()[:8] * 255 + 0.5).astype(np.uint8)


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _crafted_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height greyscale pixels, with a few bytes of data: what
    a decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def _cli(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def _process(*args: object, timeout: float = 120, memory: int | None = None, env: dict | None = None,
             cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The real CLI in a child process (as a user runs it: no VAE_EXPORT_DEBUG), with a wall-clock
    timeout and optionally an address-space limit."""
    environ = {k: v for k, v in os.environ.items() if k != "VAE_EXPORT_DEBUG"}
    environ.update(env or {})

    def limit() -> None:
        if memory:
            resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run([sys.executable, "-m", "vae_export", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=environ, preexec_fn=limit, cwd=cwd)


def _one_error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    assert "internal error" not in lines[0], lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# ---- IDX files: header first, bounded, streamed ------------------------------------------------

def _gzip_claiming(path: Path, dims: tuple[int, ...], payload: int) -> None:
    """A gzip IDX whose header claims `dims` but holds `payload` zero bytes: gzip members
    concatenated (readers see one stream), the 64 MiB member compressed once."""
    header = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    block = gzip.compress(b"\0" * (64 << 20))
    with open(path, "wb") as fh:
        fh.write(gzip.compress(header))
        for _ in range(payload // (64 << 20)):
            fh.write(block)


def test_a_small_gzip_claiming_gigabytes_is_refused_from_its_header(tmp_path, exported_dir):
    """3 MB of gzip that decompresses to 3 GB and claims 6 GB: refused before decompressing, in a
    process limited to 2.5 GiB of address space (decompressing it whole needs 3 GB more)."""
    path = tmp_path / "bomb-idx3-ubyte.gz"
    _gzip_claiming(path, (7_653_061, 28, 28), 3 * GIB)  # 6.0e9 pixels claimed
    assert path.stat().st_size < 4 * 1024**2
    started = time.monotonic()
    proc = _process("encode", path, "-o", tmp_path / "o.parquet", "--artifacts", exported_dir, memory=int(2.5 * GIB))
    _one_error_line(proc, str(path), "7653061x28x28")
    assert time.monotonic() - started < 60
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("dims, payload", [
    ((65536,) * 4, 0),  # 2^64 values: a product in int64 wraps to 0, which an empty file "matches"
    ((2**32 - 1,) * 4, 100),
    ((2**32 - 1, 2**32 - 1, 28), 100),
])
def test_header_dimensions_that_overflow_are_one_clear_error(tmp_path, dims, payload):
    for gz in (False, True):
        path = tmp_path / f"overflow{len(dims)}{'.gz' if gz else ''}"
        data = bytes([0, 0, 8, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims) + b"\0" * payload
        path.write_bytes(gzip.compress(data) if gz else data)
        with pytest.raises(VAEExportError, match=r"overflow.*: header says " + "x".join(map(str, dims))):
            read_idx(path)


def test_a_corrupt_gzip_stream_is_one_error_line(tmp_path, runner, exported_dir, images):
    good = gzip.compress(idx_bytes(images[:, 0]))
    path = tmp_path / "corrupt-idx3-ubyte.gz"
    path.write_bytes(good[:40] + bytes(b ^ 0x5A for b in good[40:200]) + good[200:])  # a bad deflate stream
    result = _cli(runner, "encode", path, "-o", tmp_path / "o.parquet", "--artifacts", exported_dir)
    assert result.exit_code in (1, 2), result.output
    one_line_error(result, str(path), "not a valid gzip file")
    with pytest.raises(VAEExportError, match="not a valid gzip file"):
        read_idx(path)


def test_raw_idx_is_memory_mapped_not_read(tmp_path, images):
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(idx_bytes(images[:, 0]))
    array = read_idx(path)
    assert isinstance(array, np.memmap)  # streamed from the file, rows on demand
    np.testing.assert_array_equal(array, images[:, 0])


# ---- images: PNG/JPEG only, size before decoding, bounded reads ----------------------------------

def test_an_eps_named_png_never_reaches_ghostscript(tmp_path, exported_dir, images):
    """A fake `gs` on PATH records whether Pillow's EPS plugin ran it."""
    bin_dir, folder = tmp_path / "bin", tmp_path / "in"
    bin_dir.mkdir()
    folder.mkdir()
    marker = tmp_path / "ghostscript-ran"
    (bin_dir / "gs").write_text(f"#!/bin/sh\ntouch {marker}\nexit 1\n")
    (bin_dir / "gs").chmod(0o755)
    (folder / "good.png").write_bytes(_png(images[0]))
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n0 0 moveto showpage\n%%EOF\n"
    (folder / "evil.png").write_bytes(eps)
    out = tmp_path / "o.parquet"
    proc = _process("encode", folder, "-o", out, "--artifacts", exported_dir,
                    env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})
    _one_error_line(proc, "1 of 2 rows failed")
    assert not marker.exists()
    rows = {r["id"]: r["error"] for r in pq.read_table(out).to_pylist()}
    assert rows["good.png"] is None and "not a PNG or JPEG image" in rows["evil.png"]


def _bad_image_folder(tmp_path: Path, images: np.ndarray) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"good{i}.png").write_bytes(_png(images[i]))
    (folder / "bomb.png").write_bytes(_crafted_png(20000, 20000))  # 4e8 pixels: past Pillow's own bomb error
    (folder / "wide.png").write_bytes(_crafted_png(10000, 10000))  # 1e8: Pillow only warns, then decodes
    (folder / "truncated.png").write_bytes(_png(images[3])[:60])
    return folder


EXPECTED_REASONS = {
    "bomb.png": "expected a 28x28 image, found one of more than 178956970 pixels",  # Pillow's own bomb check
    "wide.png": "expected a 28x28 image, found 10000x10000",
}


@pytest.mark.parametrize("engine", ["local", "ray"])
def test_bomb_and_truncated_pngs_are_error_rows_on_both_engines(tmp_path, runner, request, exported_dir, images,
                                                                engine):
    if engine == "ray":
        request.getfixturevalue("ray_cluster")
    folder = _bad_image_folder(tmp_path, images)
    out = tmp_path / "o.parquet"
    result = _cli(runner, "score", folder, "-o", out, "--artifacts", exported_dir, "--engine", engine, "--workers", 2,
                  "--batch-size", 2)
    assert result.exit_code == 1, result.output
    one_line_error(result, f"3 of 6 rows failed; their reasons are in the error column of {out}")
    rows = {r["id"]: r for r in pq.read_table(out).to_pylist()}
    for name, reason in EXPECTED_REASONS.items():
        assert rows[name]["error"] == reason and rows[name]["score"] is None
    assert "not a readable image" in rows["truncated.png"]["error"]
    assert all(rows[f"good{i}.png"]["error"] is None and rows[f"good{i}.png"]["score"] > 0 for i in range(3))


def test_a_sparse_png_is_an_error_row_not_read_whole(tmp_path, exported_dir, images):
    """A 16 GiB sparse file named .png, in a process limited to 4 GiB of address space."""
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.png").write_bytes(_png(images[0]))
    with open(folder / "sparse.png", "wb") as fh:
        fh.write(_png(images[1]))
        fh.truncate(16 * GIB)
    out = tmp_path / "o.parquet"
    proc = _process("encode", folder, "-o", out, "--artifacts", exported_dir, memory=4 * GIB)
    _one_error_line(proc, "1 of 2 rows failed")
    rows = {r["id"]: r["error"] for r in pq.read_table(out).to_pylist()}
    assert rows["good.png"] is None and rows["sparse.png"].startswith("file of 17179869184 bytes; at most")


def test_fail_fast_stops_at_the_first_bad_row_and_writes_nothing(tmp_path, runner, exported_dir, images):
    folder = _bad_image_folder(tmp_path, images)
    out = tmp_path / "o.parquet"
    result = _cli(runner, "encode", folder, "-o", out, "--artifacts", exported_dir, "--fail-fast", "--batch-size", 2)
    assert result.exit_code == 1, result.output
    one_line_error(result, "bomb.png", EXPECTED_REASONS["bomb.png"], "--fail-fast")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]  # no output, no temporary file


# ---- counts and shapes bounded before any work -------------------------------------------------

@pytest.mark.parametrize("args, option", [
    (["generate", "-n", 10**12], "-n"),
    (["generate", "-n", 10**12, "--engine", "ray"], "-n"),
    (["score", "{x}", "--samples", 10**6], "--samples"),
    (["score", "{x}", "--samples", 1025], "--samples"),  # one past the runtime's MAX_SAMPLES
    (["encode", "{x}", "--batch-size", 65537], "--batch-size"),  # one past the runtime's MAX_BATCH
])
def test_counts_past_their_bounds_exit_2_at_parse_time(tmp_path, exported_dir, images, args, option):
    np.save(tmp_path / "x.npy", images)
    args = [str(tmp_path / "x.npy") if a == "{x}" else a for a in args]
    proc = _process(*args, "-o", tmp_path / "out.parquet", "--artifacts", exported_dir, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert f"Error: Invalid value for '{option}'" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


@pytest.mark.parametrize("shape, dtype, fragments", [
    ((10**12, 0), np.uint8, ("1000000000000 rows; a job takes at most 100000000",)),
    ((4, 28, 27), np.float32, ("rows of 756 values", "1x28x28 = 784")),
    ((3, 0, 28, 28), np.uint8, ("rows of 0 values", "1x28x28 = 784")),
])
def test_npy_shapes_that_cannot_be_images_are_refused_before_any_work(tmp_path, exported_dir, shape, dtype, fragments):
    np.save(tmp_path / "x.npy", np.zeros(shape, dtype))
    proc = _process("encode", tmp_path / "x.npy", "-o", tmp_path / "o.parquet", "--artifacts", exported_dir,
                    timeout=60)
    assert proc.returncode == 2, proc.stderr
    _one_error_line(proc, str(tmp_path / "x.npy"), *fragments)
    assert not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("count, batch_size", [(10**8, 1), (10**8, 1024), (12, 5), (1, 65536), (2049, 1)])
def test_the_ray_driver_holds_at_most_1024_spans_whatever_the_row_count(count, batch_size):
    """The driver puts one small table per span in the object store (it was one per batch: 10^9
    tables for -n 10^12); spans cover every row once, in order, each whole batches."""
    from vae_export.scale.jobs import MAX_RAY_SPANS, _spans

    spans = [(t.column("start")[0].as_py(), t.column("stop")[0].as_py()) for t in _spans(count, batch_size)]
    assert 1 <= len(spans) <= MAX_RAY_SPANS == 1024
    assert spans[0][0] == 0 and spans[-1][1] == count
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # contiguous, in order
    assert all((stop - start) % batch_size == 0 for start, stop in spans[:-1])


# ---- generate -o DIR: links, part-way failures, SIGTERM -------------------------------------------

def test_generate_never_writes_through_a_link_planted_in_the_folder(tmp_path, runner, exported_dir):
    out, outside = tmp_path / "pngs", tmp_path / "outside.txt"
    out.mkdir()
    outside.write_bytes(b"precious")
    (out / "000001.png").symlink_to(outside)
    result = _cli(runner, "generate", "-n", 3, "-o", out, "--artifacts", exported_dir)
    assert result.exit_code == 1, result.output
    one_line_error(result, str(out / "000001.png"), "symbolic link")
    assert outside.read_bytes() == b"precious"
    assert sorted(p.name for p in out.iterdir()) == ["000001.png"] and (out / "000001.png").is_symlink()


def test_generate_that_fails_part_way_leaves_the_folder_as_it_was(tmp_path, runner, exported_dir):
    out = tmp_path / "pngs"
    out.mkdir()
    (out / "000000.png").write_bytes(b"an earlier run")
    (out / "000004.png").mkdir()  # the fifth sample cannot be written
    before = snapshot(out)
    result = _cli(runner, "generate", "-n", 6, "-o", out, "--artifacts", exported_dir, "--batch-size", 2)
    assert result.exit_code == 1, result.output
    one_line_error(result, str(out / "000004.png"))
    assert snapshot(out) == before and sorted(p.name for p in out.iterdir()) == ["000000.png", "000004.png"]


@pytest.mark.parametrize("target", ["samples.parquet", "pngs"])
def test_sigterm_during_generate_removes_its_temporary_files(tmp_path, exported_dir, target):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    environ = {k: v for k, v in os.environ.items() if k != "VAE_EXPORT_DEBUG"}
    proc = subprocess.Popen([sys.executable, "-m", "vae_export", "generate", "-n", "5000000", "--batch-size", "64",
                             "-o", str(out / target), "--artifacts", str(exported_dir)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environ)
    try:
        deadline = time.monotonic() + 90
        while not [p for p in out.rglob("*") if p.name.startswith(".") and (p.is_dir() or p.stat().st_size)]:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            time.sleep(0.1)
        time.sleep(0.5)  # well into the job
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "SIGTERM" in lines[0], stderr
    assert sorted(p.name for p in out.rglob("*")) == ["keep.txt"]


@pytest.mark.parametrize("output", ["/proc/vae-export-out.parquet", "/proc/self/samples.parquet"])
def test_an_unwritable_output_is_one_error_line(tmp_path, runner, exported_dir, output):
    result = _cli(runner, "generate", "-n", 2, "-o", output, "--artifacts", exported_dir)
    assert result.exit_code in (1, 2), result.output
    one_line_error(result, f"--output {output}", "cannot write")


# ---- a dead Ray head ----------------------------------------------------------------------------

def test_a_dead_ray_head_fails_within_seconds_in_one_line(tmp_path, exported_dir, images):
    np.save(tmp_path / "x.npy", images)
    for address in (f"127.0.0.1:{free_port()}", f"ray://127.0.0.1:{free_port()}"):
        started = time.monotonic()
        proc = _process("encode", tmp_path / "x.npy", "-o", tmp_path / "o.parquet", "--artifacts", exported_dir,
                        "--engine", "ray", "--address", address, timeout=90)
        elapsed = time.monotonic() - started
        _one_error_line(proc, f"--address {address}", "cannot join Ray")
        assert elapsed < 20, elapsed  # Python and the imports included
    assert not (tmp_path / "o.parquet").exists()


def test_a_port_that_is_not_ray_fails_within_seconds(tmp_path, exported_dir, images):
    """Something listens there, but it is not a Ray head: Ray's own retries are bounded."""
    np.save(tmp_path / "x.npy", images)
    with socket.socket() as listener:
        listener.bind(("0.0.0.0", 0))  # Ray rewrites 127.0.0.1 to the node's own address
        listener.listen(16)
        port = listener.getsockname()[1]
        started = time.monotonic()
        proc = _process("encode", tmp_path / "x.npy", "-o", tmp_path / "o.parquet", "--artifacts", exported_dir,
                        "--engine", "ray", "--address", f"127.0.0.1:{port}", timeout=120)
        elapsed = time.monotonic() - started
    _one_error_line(proc, f"--address 127.0.0.1:{port}", "cannot join Ray")
    assert elapsed < 25, elapsed
