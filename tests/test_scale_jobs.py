"""Batch jobs (encode, score, generate) on the local and Ray Data engines: every input kind,
identical rows whichever engine ran them, error rows, atomic output, a killed actor."""

from __future__ import annotations

import gzip
import io
import os
import signal
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vae_export.cli import main
from vae_export.runtime import VAE
from vae_export.scale.inputs import open_source
from vae_export.scale.jobs import run_job
from vae_export.scale.outputs import parquet_writer
from vae_export.scale.noise import SCORE_STREAM, normal_rows
from vae_export.scale.tasks import make_task

from conftest import snapshot


@pytest.fixture(scope="module")
def images(digits) -> np.ndarray:
    """200 real 28x28 images as uint8 (what files hold), [N, 1, 28, 28]."""
    return (digits.test.numpy()[:200] * 255 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def vae(exported_dir) -> VAE:
    return VAE(exported_dir / "encoder.onnx", exported_dir / "decoder.onnx")


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array[0]).save(buffer, format="PNG")
    return buffer.getvalue()


def _read(path) -> pa.Table:
    return pq.read_table(path)


def _vectors(table: pa.Table, column: str) -> np.ndarray:
    return np.array(table.column(column).to_pylist(), dtype=np.float32)


def _cli(runner, *args):
    return runner.invoke(main, [str(a) for a in args])


def test_encode_reads_every_input_kind(tmp_path, runner, exported_dir, images, vae):
    expected_mu, expected_logvar = vae.encoder.encode(images[:6].astype(np.float32) / 255.0)
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):  # nested, and both suffixes: ids are the sorted relative paths
        name = f"sub/{i}.png" if i % 2 else f"{i}.PNG"
        (folder / name).write_bytes(_png(images[i]))
    np.save(tmp_path / "u8.npy", images[:6])
    np.save(tmp_path / "flat.npy", images[:6].reshape(6, -1).astype(np.float32) / 255.0)
    header = bytes([0, 0, 8, 3]) + b"".join(int(d).to_bytes(4, "big") for d in (6, 28, 28))
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images[:6].tobytes()))
    pq.write_table(pa.table({"image": [_png(im) for im in images[:6]]}), tmp_path / "png.parquet")
    pq.write_table(pa.table({"image": [im.reshape(-1).tolist() for im in images[:6]]}), tmp_path / "list.parquet",
                   row_group_size=4)  # two row groups
    for source in (folder, "u8.npy", "flat.npy", "images-idx3-ubyte.gz", "png.parquet", "list.parquet"):
        path = folder if source is folder else tmp_path / source
        out = tmp_path / f"{path.name}.out.parquet"
        result = _cli(runner, "encode", path, "-o", out, "--artifacts", exported_dir, "--batch-size", 4)
        assert result.exit_code == 0, (source, result.output)
        table = _read(out)
        assert table.column_names == ["id", "mu", "logvar", "error"] and table.column("error").null_count == 6
        ids = table.column("id").to_pylist()
        if source is folder:
            assert ids == ["0.PNG", "2.PNG", "4.PNG", "sub/1.png", "sub/3.png", "sub/5.png"]
            order = [0, 2, 4, 1, 3, 5]
        else:
            assert ids == list(range(6))
            order = list(range(6))
        np.testing.assert_allclose(_vectors(table, "mu"), expected_mu[order], atol=1e-6)
        np.testing.assert_allclose(_vectors(table, "logvar"), expected_logvar[order], atol=1e-6)


def test_score_is_the_runtimes_score_whatever_the_batching(tmp_path, exported_dir, images, vae):
    np.save(tmp_path / "x.npy", images)
    source = open_source(tmp_path / "x.npy")
    task = make_task("score", exported_dir, source, seed=3, samples=2)
    scores = {}
    for batch_size in (7, 1024):
        out = tmp_path / f"s{batch_size}.parquet"
        result = run_job(task, len(source), parquet_writer(out, task.schema()), batch_size=batch_size)
        assert (result.rows, result.errors) == (200, 0)
        scores[batch_size] = _read(out).column("score").to_numpy()
    np.testing.assert_array_equal(scores[7], scores[1024])
    x = images.astype(np.float32) / 255.0
    rows = np.arange(200)
    eps = np.stack([normal_rows(3, rows, vae.decoder.latent_dim, SCORE_STREAM, d) for d in range(2)])
    np.testing.assert_allclose(scores[7], vae.anomaly_score(x, samples=2, eps=eps), rtol=1e-12)
    assert 20 < scores[7].mean() < 1000  # nats per image, a real model's range


def test_ray_engine_gives_the_same_rows(tmp_path, runner, ray_cluster, exported_dir, images):
    np.save(tmp_path / "x.npy", images)
    for command in ("encode", "score"):
        outputs = {}
        for engine in ("local", "ray"):
            out = tmp_path / f"{command}-{engine}.parquet"
            result = _cli(runner, command, tmp_path / "x.npy", "-o", out, "--artifacts", exported_dir,
                          "--engine", engine, "--batch-size", 32, "--workers", 2)
            assert result.exit_code == 0, result.output
            assert f"{engine} engine" in result.output
            outputs[engine] = _read(out)
        local, ray = outputs["local"], outputs["ray"]
        assert ray.column("id").to_pylist() == list(range(200)) == local.column("id").to_pylist()
        for column in ("mu", "logvar") if command == "encode" else ("score",):
            np.testing.assert_allclose(np.array(ray.column(column).to_pylist()),
                                       np.array(local.column(column).to_pylist()), atol=1e-6)


def test_generate_same_samples_however_split(tmp_path, runner, ray_cluster, exported_dir, vae):
    runs = [("local", 1000), ("local", 3), ("ray", 5)]
    tables = []
    for engine, batch in runs:
        out = tmp_path / f"g-{engine}-{batch}.parquet"
        result = _cli(runner, "generate", "-n", 12, "--seed", 4, "-o", out, "--artifacts", exported_dir,
                      "--engine", engine, "--batch-size", batch, "--workers", 2)
        assert result.exit_code == 0, result.output
        tables.append(_read(out))
    for table in tables[1:]:
        assert table.column("id").to_pylist() == list(range(12))
        np.testing.assert_allclose(_vectors(table, "x_hat"), _vectors(tables[0], "x_hat"), atol=1e-6)
    z = _vectors(tables[0], "z")
    np.testing.assert_allclose(_vectors(tables[0], "x_hat").reshape(12, 1, 28, 28), vae.decoder.decode(z), atol=1e-6)
    assert tables[0].schema.metadata[b"vae_export.image_shape"] == b"1,28,28"
    # a folder: one PNG per sample, the same pixels
    result = _cli(runner, "generate", "-n", 3, "--seed", 4, "-o", tmp_path / "pngs", "--artifacts", exported_dir)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "pngs").iterdir()) == ["000000.png", "000001.png", "000002.png"]
    with Image.open(tmp_path / "pngs" / "000002.png") as image:
        pixels = np.asarray(image, dtype=np.float32) / 255.0
    np.testing.assert_allclose(pixels, _vectors(tables[0], "x_hat")[2].reshape(28, 28), atol=0.5 / 255 + 1e-6)


def test_bad_rows_become_error_rows_and_exit_1(tmp_path, runner, exported_dir, images):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        (folder / f"good{i}.png").write_bytes(_png(images[i]))
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    Image.new("L", (32, 32)).save(folder / "big.png")
    out = tmp_path / "out.parquet"
    result = runner.invoke(main, ["score", str(folder), "-o", str(out), "--artifacts", str(exported_dir)])
    assert result.exit_code == 1
    assert f"Error: 2 of 5 rows failed; their reasons are in the error column of {out}" in result.output
    rows = {r["id"]: r for r in _read(out).to_pylist()}
    assert set(rows) == {"good0.png", "good1.png", "good2.png", "corrupt.png", "big.png"}
    assert rows["corrupt.png"]["score"] is None and "not a readable image" in rows["corrupt.png"]["error"]
    assert rows["big.png"]["error"] == "expected a 28x28 image, found 32x32"
    assert all(rows[f"good{i}.png"]["error"] is None and rows[f"good{i}.png"]["score"] > 0 for i in range(3))
    # a wrong-size row of a parquet list column, and a NaN row of an array
    values = [images[0].reshape(-1).tolist(), [0.5] * 10, images[1].reshape(-1).tolist()]
    pq.write_table(pa.table({"pixels": values}), tmp_path / "l.parquet")
    result = _cli(runner, "encode", tmp_path / "l.parquet", "--column", "pixels", "-o", out, "--artifacts", exported_dir)
    assert result.exit_code == 1 and "1 of 3 rows failed" in result.output
    assert _read(out).column("error").to_pylist() == [None, "expected 1x28x28 = 784 values, found shape [10]", None]
    x = images[:3].astype(np.float32) / 255.0
    x[1, 0, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", x)
    result = _cli(runner, "encode", tmp_path / "nan.npy", "-o", out, "--artifacts", exported_dir)
    assert result.exit_code == 1 and _read(out).column("error").to_pylist() == [None, "contains NaN or Inf", None]


def test_an_interrupted_job_leaves_no_file(tmp_path, exported_dir, images):
    np.save(tmp_path / "x.npy", images)
    task = make_task("encode", exported_dir, open_source(tmp_path / "x.npy"))
    out = tmp_path / "out" / "latents.parquet"
    out.parent.mkdir()
    calls = []

    def interrupt(n: int) -> None:  # Ctrl-C after the first batch was written
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_job(task, 200, parquet_writer(out, task.schema()), batch_size=50, on_rows=interrupt)
    assert calls == [50, 50] and list(out.parent.iterdir()) == []
    out.write_bytes(b"previous")  # an existing output survives an interrupted rewrite untouched
    with pytest.raises(KeyboardInterrupt):
        calls.clear()
        run_job(task, 200, parquet_writer(out, task.schema()), batch_size=50, on_rows=interrupt)
    assert snapshot(out.parent) == {"latents.parquet": b"previous"}


def test_a_killed_actor_is_retried_and_no_row_is_lost_or_doubled(tmp_path, ray_cluster, exported_dir, digits):
    # The GCS actor table: the public state API (ray.util.state) needs the dashboard, which
    # the test cluster runs without.
    from ray._private.state import actors

    def pool() -> dict[str, dict]:
        return {k: a for k, a in actors().items() if "MapBatches(_RayWorker)" in a["ActorClassName"]}

    x = np.concatenate([digits.train.numpy()] * 2)  # 2,874 rows, 58 batches of 50
    np.save(tmp_path / "x.npy", x)
    source = open_source(tmp_path / "x.npy")
    task = make_task("score", exported_dir, source)
    killed, seen = [], []

    def kill_one_actor(n: int) -> None:
        seen.append(n)
        if killed:
            return
        victim = next(k for k, a in pool().items() if a["State"] == "ALIVE")
        os.kill(pool()[victim]["Pid"], signal.SIGKILL)
        killed.append((victim, sum(seen)))

    out = tmp_path / "scores.parquet"
    result = run_job(task, len(x), parquet_writer(out, task.schema()), engine="ray", batch_size=50, workers=2,
                     on_rows=kill_one_actor)
    assert killed and killed[0][1] < len(x)  # killed in the middle of the job
    assert pool()[killed[0][0]]["NumRestarts"] >= 1  # Ray restarted it
    assert (result.rows, result.errors) == (len(x), 0)
    table = _read(out)
    assert table.column("id").to_pylist() == list(range(len(x)))  # every row, once, in order
    local = tmp_path / "local.parquet"
    run_job(task, len(x), parquet_writer(local, task.schema()), batch_size=1000)
    np.testing.assert_allclose(table.column("score").to_numpy(), _read(local).column("score").to_numpy(), atol=1e-6)


def test_usage_errors(tmp_path, runner, exported_dir, images):
    np.save(tmp_path / "x.npy", images[:2])
    (tmp_path / "notes.txt").write_text("hello")
    pq.write_table(pa.table({"image": pa.array([], type=pa.binary())}), tmp_path / "empty.parquet")
    cases = [
        (["encode", tmp_path / "x.npy", "-o", tmp_path / "o.parquet", "--artifacts", tmp_path / "none"],
         f"Error: --artifacts {tmp_path / 'none'}: no encoder.onnx; run `vae-export export"),
        (["encode", tmp_path / "notes.txt", "-o", tmp_path / "o.parquet", "--artifacts", exported_dir],
         f"Error: INPUT {tmp_path / 'notes.txt'}: expected an image folder, a .npy, an IDX (raw or .gz) or a .parquet file"),
        (["score", tmp_path / "x.npy", "-o", tmp_path / "o.csv", "--artifacts", exported_dir],
         f"Error: --output {tmp_path / 'o.csv'}: expected a .parquet file name"),
        (["encode", tmp_path, "-o", tmp_path / "o.parquet", "--artifacts", exported_dir],
         "expected PNG or JPEG images in the folder, found none"),
        (["encode", tmp_path / "empty.parquet", "-o", tmp_path / "o.parquet", "--artifacts", exported_dir],
         f"Error: INPUT {tmp_path / 'empty.parquet'}: expected at least one row, found none"),
        (["encode", tmp_path / "empty.parquet", "--column", "pixels", "-o", tmp_path / "o.parquet",
          "--artifacts", exported_dir], f"Error: --column pixels: {tmp_path / 'empty.parquet'} has no such column"),
    ]
    for args, message in cases:
        result = _cli(runner, *args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
    assert not (tmp_path / "o.parquet").exists() and not (tmp_path / "o.csv").exists()


def test_the_cli_imports_no_ray_or_pyarrow():
    code = ("import sys, vae_export.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'ray', 'pyarrow', 'torch', 'onnxruntime', 'fastapi'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
