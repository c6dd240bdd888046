import gzip
import hashlib
import http.server
import threading
from functools import partial

import numpy as np
import pytest

from conftest import MNIST_DIR, write_idx_dir
from vae_export.data import IDX_FILES, download_idx, load_dataset, load_digits, parse_idx
from vae_export.errors import UsageError, VAEExportError

needs_mnist = pytest.mark.skipif(not (MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
                                 reason=f"real MNIST not found at {MNIST_DIR}")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, gz):
    arrays = write_idx_dir(tmp_path, gz=gz)
    ds = load_dataset("mnist", tmp_path)
    assert ds.train.shape == (5, 1, 28, 28) and ds.test.shape == (3, 1, 28, 28)
    assert ds.train.dtype.is_floating_point
    np.testing.assert_allclose(ds.train[:, 0].numpy() * 255.0, arrays["train_images"], atol=1e-3)


def test_corrupt_magic_named(tmp_path):
    write_idx_dir(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(b"\x12\x34" + path.read_bytes()[2:])
    with pytest.raises(VAEExportError, match=r"train-images-idx3-ubyte: bad IDX magic number 0x1234"):
        load_dataset("mnist", tmp_path)


def test_wrong_count_named(tmp_path):
    write_idx_dir(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(VAEExportError, match=r"t10k-images-idx3-ubyte: header says 3x28x28 values"):
        load_dataset("mnist", tmp_path)


def test_label_count_mismatch(tmp_path):
    write_idx_dir(tmp_path, label_count=4)
    with pytest.raises(VAEExportError, match=r"train-labels-idx1-ubyte: expected 5 labels"):
        load_dataset("mnist", tmp_path)


def test_not_28x28(tmp_path):
    write_idx_dir(tmp_path, shape=(32, 32))
    with pytest.raises(VAEExportError, match=r"expected images of shape N x 28 x 28, found 5 x 32 x 32"):
        load_dataset("mnist", tmp_path)


def test_missing_file_is_usage_error(tmp_path):
    write_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(UsageError, match="missing t10k-labels-idx1-ubyte"):
        load_dataset("mnist", tmp_path)


def test_parse_idx_rejects_short_header():
    with pytest.raises(VAEExportError, match="truncated IDX header"):
        parse_idx(bytes([0, 0, 8, 3, 0, 0]), "x")


def test_digits_shape_range_and_fixed_split():
    a, b = load_digits(), load_digits()
    assert a.train.shape == (1438, 1, 28, 28) and a.test.shape == (359, 1, 28, 28)
    assert float(a.train.min()) >= 0.0 and float(a.train.max()) <= 1.0
    # MNIST-like framing: the 4-pixel border is empty.
    assert float(a.train[:, :, :4].abs().max()) == 0.0
    assert (a.test == b.test).all()


@needs_mnist
def test_real_mnist_loads():
    ds = load_dataset("mnist", MNIST_DIR)
    assert ds.train.shape == (60000, 1, 28, 28) and ds.test.shape == (10000, 1, 28, 28)
    assert 0.12 < float(ds.train.mean()) < 0.14  # MNIST's well-known mean pixel, 0.1307


@pytest.fixture
def mnist_server():
    """A local HTTP server on 127.0.0.1 serving ../shared/data/mnist; no outside network."""
    handler = partial(_QuietHandler, directory=str(MNIST_DIR))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@needs_mnist
def test_download_verifies_and_caches(tmp_path, mnist_server, monkeypatch):
    monkeypatch.setenv("VAE_EXPORT_DATA", str(tmp_path / "cache"))
    ds = load_dataset("mnist", download=True, mirror=mnist_server)
    cached = tmp_path / "cache" / "mnist"
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{s}.gz" for s in IDX_FILES.values())
    digest = hashlib.sha256(gzip.decompress((cached / "t10k-labels-idx1-ubyte.gz").read_bytes())).hexdigest()
    assert digest == "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
    assert ds.test.shape == (10000, 1, 28, 28)


@needs_mnist
def test_download_rejects_bad_checksum(tmp_path, mnist_server):
    # fashion-mnist's checksums do not match the MNIST files this server has.
    with pytest.raises(VAEExportError, match="sha256 mismatch"):
        download_idx("fashion-mnist", tmp_path / "f", mirror=mnist_server)
    assert not any((tmp_path / "f").iterdir())  # nothing half-written


def test_download_unreachable_is_clear(tmp_path):
    with pytest.raises(VAEExportError, match="download failed"):
        download_idx("mnist", tmp_path, mirror="http://127.0.0.1:9/")
