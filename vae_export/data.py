"""Datasets as float32 tensors in [0, 1], shape [N, 1, 28, 28], split into train and test.

`digits` is embedded (vae_export/datasets/), so the default job needs no network. MNIST and
Fashion-MNIST come from the four standard IDX files in a directory the user names, or are
downloaded once into a cache with their checksums verified.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from vae_export.artifacts import atomic_write_bytes, cache_dir
from vae_export.errors import UsageError, VAEExportError
from vae_export.options import DATASETS
from vae_export.idx import parse_idx, read_idx  # noqa: F401  (torch-free, re-exported)


IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# Checksums of the *decompressed* files, so a mirror that re-gzips them still verifies.
# MNIST: the digests published with ../shared/data (identical to the original distribution).
# Fashion-MNIST: digests of the original .gz files as distributed by Zalando.
_CHECKSUMS: dict[str, dict[str, tuple[str, str]]] = {
    "mnist": {
        "train_images": ("content", "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"),
        "train_labels": ("content", "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"),
        "test_images": ("content", "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test_labels": ("content", "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    "fashion-mnist": {
        "train_images": ("gzip", "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"),
        "train_labels": ("gzip", "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"),
        "test_images": ("gzip", "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"),
        "test_labels": ("gzip", "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"),
    },
}

DEFAULT_MIRRORS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

_DOWNLOAD_TIMEOUT_S = 60


# Class names per dataset, index = label (conditional models record them in their graphs).
CLASS_NAMES = {
    "digits": tuple(str(d) for d in range(10)),
    "mnist": tuple(str(d) for d in range(10)),
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                      "Bag", "Ankle boot"),
}


@dataclass(frozen=True)
class Dataset:
    name: str
    train: torch.Tensor  # [N, 1, 28, 28] float32 in [0, 1]
    test: torch.Tensor
    # int64 class labels, [N]; None for a dataset without labels
    train_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return CLASS_NAMES.get(self.name, ()) if self.train_labels is not None else ()


def load_dataset(
    name: str,
    data_dir: Path | None = None,
    download: bool = False,
    mirror: str | None = None,
) -> Dataset:
    if name == "digits":
        return load_digits()
    if name not in DATASETS:
        raise UsageError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if data_dir is None:
        data_dir = cache_dir() / name
        if download:
            download_idx(name, data_dir, mirror)
        elif not any(find_idx_file(data_dir, f) for f in IDX_FILES.values()):
            raise UsageError(
                f"dataset {name!r} needs --data-dir DIR with the four IDX files, "
                f"or --download to fetch them into {data_dir}"
            )
    elif download:
        download_idx(name, data_dir, mirror)
    return load_idx_dir(name, data_dir)


DIGITS_FILE = "digits.csv.gz"  # vae_export/datasets/: 64 pixel values (0..16) then the label, a row per image


def load_digits(test_fraction: float = 0.2) -> Dataset:
    """The embedded 1,797 8x8 digits (UCI's, as scikit-learn ships them: vae_export/datasets/),
    upscaled and padded like MNIST (20x20 in 28x28)."""
    with resources.files("vae_export").joinpath("datasets", DIGITS_FILE).open("rb") as raw_file:
        with gzip.open(raw_file) as text:
            rows = np.loadtxt(text, delimiter=",")
    raw = rows[:, :-1].reshape(-1, 8, 8).astype(np.float32) / 16.0  # [N, 8, 8], values 0..16
    labels = torch.from_numpy(rows[:, -1].astype(np.int64))
    x = torch.from_numpy(raw).unsqueeze(1)
    x = torch.nn.functional.interpolate(x, size=(20, 20), mode="bilinear", align_corners=False)
    x = torch.nn.functional.pad(x, (4, 4, 4, 4)).clamp_(0.0, 1.0).contiguous()
    # A fixed permutation: the same split on every machine, independent of --seed.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_test = int(len(x) * test_fraction)
    train, test = order[n_test:], order[:n_test]
    return Dataset("digits", train=x[train], test=x[test], train_labels=labels[train], test_labels=labels[test])


def find_idx_file(data_dir: Path, stem: str) -> Path | None:
    for candidate in (data_dir / stem, data_dir / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _images_to_tensor(images: np.ndarray, source: Path) -> torch.Tensor:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise VAEExportError(
            f"{source}: expected images of shape N x 28 x 28, found {' x '.join(map(str, images.shape))}"
        )
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def load_idx_dir(name: str, data_dir: Path) -> Dataset:
    """The four IDX files of a split pair; the two label files may both be absent (images
    only: enough for an unconditional model), but not one of them."""
    if not data_dir.is_dir():
        raise UsageError(f"--data-dir {data_dir}: not a directory")
    paths = {key: find_idx_file(data_dir, stem) for key, stem in IDX_FILES.items()}
    labelled = paths["train_labels"] is not None or paths["test_labels"] is not None
    for key, stem in IDX_FILES.items():
        if paths[key] is None and (labelled or not key.endswith("_labels")):
            raise UsageError(f"--data-dir {data_dir}: missing {stem} (or {stem}.gz)")
    splits: dict[str, torch.Tensor] = {}
    label_splits: dict[str, torch.Tensor | None] = {"train": None, "test": None}
    for split in ("train", "test"):
        image_path = paths[f"{split}_images"]
        assert image_path is not None
        images = read_idx(image_path)
        splits[split] = _images_to_tensor(images, image_path)
        label_path = paths[f"{split}_labels"]
        if label_path is not None:
            label_splits[split] = _labels_to_tensor(read_idx(label_path), len(images), image_path, label_path,
                                                    len(CLASS_NAMES[name]))
    return Dataset(name, train=splits["train"], test=splits["test"], train_labels=label_splits["train"],
                   test_labels=label_splits["test"])


def _labels_to_tensor(labels: np.ndarray, count: int, images: Path, path: Path, classes: int) -> torch.Tensor:
    if labels.ndim != 1 or len(labels) != count:
        raise VAEExportError(f"{path}: expected {count} labels to match {images.name}, found shape {labels.shape}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise VAEExportError(f"{path}: expected labels 0..{classes - 1}, found {int(labels.min())}..{int(labels.max())}")
    return torch.from_numpy(labels.astype(np.int64))


def _verify(name: str, key: str, gz_bytes: bytes, url: str) -> None:
    kind, expected = _CHECKSUMS[name][key]
    if kind == "gzip":
        digest = hashlib.sha256(gz_bytes).hexdigest()
    else:
        try:
            digest = hashlib.sha256(gzip.decompress(gz_bytes)).hexdigest()
        except (OSError, EOFError):
            digest = "(not a gzip file)"
    if digest != expected:
        raise VAEExportError(f"{url}: sha256 mismatch, expected {expected}, got {digest}")


def download_idx(name: str, data_dir: Path, mirror: str | None = None) -> None:
    """Fetch the four .gz files that are not already present, verify each, write atomically.

    `mirror` (or $VAE_EXPORT_MIRROR) replaces the default base URL.
    """
    base = mirror or os.environ.get("VAE_EXPORT_MIRROR") or DEFAULT_MIRRORS[name]
    if not base.endswith("/"):
        base += "/"
    data_dir.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        target = data_dir / f"{stem}.gz"
        if target.is_file():
            continue
        url = base + f"{stem}.gz"
        try:
            with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                payload = response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise VAEExportError(f"{url}: download failed ({exc})") from None
        _verify(name, key, payload, url)
        atomic_write_bytes(target, payload)


def reference_images(
    metrics: dict | None, image_shape: tuple[int, ...], split: str = "test"
) -> tuple[np.ndarray | None, str]:
    """Real images for parity inputs and int8 calibration: the dataset training used (from
    train_metrics.json), else the embedded digits; None for other image shapes."""
    if tuple(image_shape) != (1, 28, 28):
        return None, "uniform [0, 1] (no dataset for this image shape)"
    name, data_dir = "digits", None
    if metrics and metrics.get("dataset") in DATASETS:
        name = metrics["dataset"]
        data_dir = Path(metrics["data_dir"]) if metrics.get("data_dir") else None
    try:
        dataset = load_dataset(name, data_dir)
    except VAEExportError:
        name, dataset = "digits", load_digits()
    images = dataset.test if split == "test" else dataset.train
    return images.numpy(), f"{name} {split} split"
