"""An NVIDIA Triton Inference Server model repository for the ONNX Runtime backend:

    OUT/vae_encoder/config.pbtxt, OUT/vae_encoder/1/model.onnx
    OUT/vae_decoder/config.pbtxt, OUT/vae_decoder/1/model.onnx

Each config.pbtxt is Triton's ModelConfig in protobuf text format: platform
"onnxruntime_onnx", max_batch_size, inputs and outputs with dims *without* the batch axis
(Triton adds it) taken from the graph's own signature, dynamic_batching with a queue delay,
and an instance_group. Serve it with (see README):

    docker run --rm -p 8000:8000 -p 8001:8001 -v $PWD/OUT:/models \\
        nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from vae_export.artifacts import ensure_dir
from vae_export_runtime.contract import BATCH_DIM, ROLES, graph_filename
from vae_export.errors import UsageError, VAEExportError
from vae_export.limits import MAX_INSTANCES, MAX_QUEUE_DELAY_US, MAX_TRITON_BATCH
from vae_export.variants import ONNX_VARIANTS

MODEL_NAMES = {"encoder": "vae_encoder", "decoder": "vae_decoder", "classifier": "vae_classifier"}
# ONNX tensor element type (as onnxinfo names it) -> Triton data type
_TRITON_TYPES = {"float": "TYPE_FP32", "float16": "TYPE_FP16", "double": "TYPE_FP64", "int64": "TYPE_INT64",
                 "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL"}


def _tensor(value: dict[str, Any], path: Path) -> str:
    shape = value["shape"]
    if not shape or shape[0] != BATCH_DIM:
        raise VAEExportError(f"{path}: {value['name']} has no leading '{BATCH_DIM}' axis ({shape}); "
                             "Triton's max_batch_size needs one")
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in shape[1:]]  # -1: a symbolic size
    dtype = _TRITON_TYPES.get(value["dtype"])
    if dtype is None:
        raise VAEExportError(f"{path}: {value['name']} has dtype {value['dtype']}, which has no Triton type here")
    return (f'  {{\n    name: "{value["name"]}"\n    data_type: {dtype}\n'
            f'    dims: [ {", ".join(map(str, dims))} ]\n  }}')


def model_config(name: str, signature: dict[str, Any], path: Path, max_batch_size: int, instances: int,
                 queue_delay_us: int, kind: str = "cpu") -> str:
    """config.pbtxt text for one graph."""
    inputs = ",\n".join(_tensor(v, path) for v in signature["inputs"])
    outputs = ",\n".join(_tensor(v, path) for v in signature["outputs"])
    return (
        f'name: "{name}"\n'
        'platform: "onnxruntime_onnx"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        "dynamic_batching {\n"
        f"  max_queue_delay_microseconds: {queue_delay_us}\n"
        "}\n"
        "instance_group [\n"
        f"  {{\n    count: {instances}\n    kind: KIND_{kind.upper()}\n  }}\n"
        "]\n"
    )


def _check_writable(out: Path) -> None:
    """Create and remove a staging folder in OUT before any graph is read: an OUT that exists
    but cannot take new entries (/proc, a read-only mount) is one error, not a traceback."""
    try:
        shutil.rmtree(tempfile.mkdtemp(dir=out, prefix=".vae-export-probe."))
    except OSError as exc:
        raise UsageError(f"--out {out}: cannot write there ({exc.strerror or exc})") from None


def write_repository(artifacts: Path, out: Path, variant: str = "fp32", max_batch_size: int = 256,
                     instances: int = 1, queue_delay_us: int = 100, kind: str = "cpu") -> list[Path]:
    """Write the encoder and decoder models (and a semi-supervised model's classifier; every
    input, `y` included, comes from the graph's signature); each model folder is staged beside its final place and renamed in,
    so an interrupted run leaves the previous model folder (or none), never half of one."""
    from vae_export.onnxinfo import load_onnx, signature

    if variant not in ONNX_VARIANTS:
        raise UsageError(f"--variant {variant}: Triton's ONNX Runtime backend loads .onnx files; pick an .onnx variant "
                         f"({', '.join(ONNX_VARIANTS)})")
    for name, value, low, high in (("--max-batch-size", max_batch_size, 1, MAX_TRITON_BATCH),
                                   ("--instances", instances, 1, MAX_INSTANCES),
                                   ("--queue-delay-us", queue_delay_us, 0, MAX_QUEUE_DELAY_US)):
        if not low <= value <= high:  # the CLI's IntRange says the same; library callers skip it
            raise UsageError(f"{name} {value}: expected {low} to {high} (Triton's ModelConfig schema)")
    ensure_dir(out, "--out")
    _check_writable(out)
    written = []
    for role in ROLES:
        source = artifacts / graph_filename(role, variant)
        if role == "classifier" and not source.is_file():
            continue  # only semi-supervised models have one
        if not source.is_file():
            raise UsageError(f"--artifacts {artifacts}: no {source.name}; run `vae-export export --artifacts {artifacts}` first")
        name = MODEL_NAMES[role]
        config = model_config(name, signature(load_onnx(source)), source, max_batch_size, instances, queue_delay_us, kind)
        stage = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}."))
        try:
            (stage / "1").mkdir()
            shutil.copyfile(source, stage / "1" / "model.onnx")
            (stage / "config.pbtxt").write_text(config)
            target = out / name
            if target.exists():
                old = Path(tempfile.mkdtemp(dir=out, prefix=f".{name}.old."))
                target.rename(old / name)
                stage.rename(target)
                shutil.rmtree(old)
            else:
                stage.rename(target)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        written.append(out / name)
    return written
