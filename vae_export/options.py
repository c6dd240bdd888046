"""What each command takes, as keyword-only frozen dataclasses whose defaults are the library's.

The CLI builds these from its options (and takes its `default=` values from them); Python
callers build them directly. Torch-free, so `vae-export --help` stays instant: that is why the
training recipe's defaults are owned here, and `model.VAEConfig` and `train.TrainConfig` read
them, rather than the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OPSET = 18
EXPORTERS = ("dynamo", "torchscript")
DATASETS = ("digits", "mnist", "fashion-mnist")
ARCHS = ("mlp", "conv")
Size = tuple[int, int]


@dataclass(frozen=True, kw_only=True)
class ModelSource:
    """Where the PyTorch model comes from; None means what the artifacts record."""

    checkpoint: Path | None = None
    model_ref: str | None = None  # module:attr of a user class
    image_shape: tuple[int, int, int] | None = None


# The reference recipe (one owner: TrainOptions, model.VAEConfig and train.TrainConfig read these).
BATCH_SIZE = 128
LEARNING_RATE = 3e-3  # the one-cycle schedule's peak
HIDDEN_DIM = 400
LATENT_DIM = 32
CHANNELS = 16  # conv: the first stage's width (the second has twice as many)
LATENT_CHANNELS = 4  # conv: channels of the spatial latent [c, H/4, W/4]


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    dataset: str = "digits"
    data_dir: Path | None = None
    download: bool = False
    epochs: int | None = None  # None: the dataset's default (train.DEFAULT_EPOCHS)
    arch: str = "mlp"  # the seed's MLP, or the fully convolutional reference (spatial latent)
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    latent_dim: int = LATENT_DIM
    hidden_dim: int = HIDDEN_DIM
    beta: float = 1.0
    seed: int = 0
    channels: int = CHANNELS
    latent_channels: int = LATENT_CHANNELS
    conditional: bool = False  # q(z|x,y) and p(x|z,y) on the dataset's labels
    labels: int | None = None  # semi-supervised (M2): this many labelled images, the rest unlabelled


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    exporter: str = "dynamo"
    variants: tuple[str, ...] = ()
    dynamic_size: bool = False  # symbolic height/width (fully convolutional models only)


@dataclass(frozen=True, kw_only=True)
class VerifyOptions:
    batch_sizes: tuple[int, ...] = (1, 2, 7, 64)
    # `--engine`: the graph engines checked against PyTorch (none: each file on the engine that
    # runs it, ONNX Runtime for .onnx/.ort, ExecuTorch for .pte)
    engines: tuple[str, ...] = ()
    atol: float = 1e-5
    rtol: float = 1e-4
    device: str = "cpu"
    sizes: tuple[Size, ...] | None = None  # symbolic-size graphs: None = Geometry.default_sizes()
    json_path: Path | None = None  # also write the report here


@dataclass(frozen=True, kw_only=True)
class BenchOptions:
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 8, 64, 256)
    threads: int = 1
    warmup: int = 20
    iterations: int = 200
    min_time_s: float = 0.0
    with_torch: bool = True
    sizes: tuple[Size, ...] | None = None  # symbolic-size graphs: None = Geometry.default_sizes()
    peers: bool = True  # also time installed peer engines (OpenVINO) on CPU
    engines: tuple[str, ...] = ()  # `--engine`: exactly these engines (default: onnxruntime, peers, torch)
    json_path: Path | None = None
    baseline: Path | None = None  # a previous report: the regression gate
    max_regression: float = 1.5
    rounds: int = 5  # alternating rounds per row
    recommend: bool = False  # record the recommendation in manifest.json (bench --recommend)


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """`vae-export run`: train on the default, export, verify, bench (short), pictures."""

    train: TrainOptions = field(default_factory=TrainOptions)
    variants: tuple[str, ...] = ()
    dynamic_size: bool = False
    bench: BenchOptions = field(default_factory=lambda: BenchOptions(warmup=10, iterations=100))


@dataclass(frozen=True, kw_only=True)
class AgainstOptions:
    """`bench --against OLD`: the A/B latency gate (docs/ci.md)."""

    device: str = BenchOptions.device
    batch_sizes: tuple[int, ...] = BenchOptions.batch_sizes
    threads: int = BenchOptions.threads
    warmup: int = BenchOptions.warmup
    iterations: int = BenchOptions.iterations
    rounds: int = 30  # paired rounds per row, over all session groups
    # groups of rounds, each with fresh sessions of both sides: the interval's units (at least 6)
    sessions: int = 10
    min_time_s: float = 1.0  # per side of each row: ~2 s a row, well under a minute for the reference model
    max_regression: float = 1.10
    json_path: Path | None = None
