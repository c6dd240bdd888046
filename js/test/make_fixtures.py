"""Exports the graphs the package's graph tests and the cross-host parity test run on: the sets
the Python runtime's own suite uses (vae_export.workloads.runtime_fixtures, one process), plus
the metadata variants below.

    /work/main/.venv/bin/python js/test/make_fixtures.py /tmp/vae-fixtures
    VAE_EXPORT_FIXTURES=/tmp/vae-fixtures npm test --prefix js

Writes one artifacts directory per model kind, each as `vae-export export` leaves it:

    flat/   the MLP reference, flat latent [16]                        (train, export)
    conv/   the conv reference, spatial latent, symbolic size           (train --arch conv, export --dynamic-size)
    cond/   a conditional MLP, y [batch, 10]                            (train --conditional, export)
    m2/     a semi-supervised M2 MLP with classifier.onnx               (train --labels 100, export)
    kl/     a tiny random diffusers AutoencoderKL, stride 2, symbolic   (export --model diffusers:AutoencoderKL)

and in `variants/` graphs derived from them for the tests of metadata handling:

    conv-with-export-size.onnx      conv/decoder.onnx with vae_export.export_size = [H, W]
    conv-without-export-size.onnx   conv/decoder.onnx without it (what exporters before it wrote)
    flat-not-ours.onnx              flat/decoder.onnx without any vae_export.* metadata

Models train for one epoch on the embedded digits (seconds each): outputs only need to be
deterministic and non-trivial; parity is about the hosts, not the models. `python -m` the
toolkit from /work/main/.venv (torch, diffusers, onnx); about 40 s on two busy cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

KINDS = ("flat", "conv", "cond", "m2", "kl")
META = "vae_export."
# The toolkit of this checkout (the one beside js/), not whichever one the venv has installed.
REPO = Path(__file__).resolve().parents[2]


def make_kind(out: Path, kind: str) -> Path:
    """One kind's artifacts directory under `out`: the same sets the Python runtime's own suite
    runs on (vae_export.workloads.runtime_fixtures), re-used when present."""
    from vae_export.workloads import runtime_fixtures

    runtime_fixtures(out, (kind,))
    return out / kind


def _rewrite_metadata(src: Path, dst: Path, change) -> None:
    import onnx

    model = onnx.load(str(src))
    props = {p.key: p.value for p in model.metadata_props}
    props = change(props)
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(dst))


def make_variants(out: Path) -> Path:
    """Graphs with changed metadata, whatever today's exporter writes (export_size or not)."""
    d = out / "variants"
    d.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((out / "conv" / "manifest.json").read_text())
    _, h, w = manifest["model"]["image_shape"]
    _rewrite_metadata(out / "conv" / "decoder.onnx", d / "conv-with-export-size.onnx",
                      lambda p: {**p, META + "export_size": json.dumps([h, w])})
    _rewrite_metadata(out / "conv" / "decoder.onnx", d / "conv-without-export-size.onnx",
                      lambda p: {k: v for k, v in p.items() if k != META + "export_size"})
    _rewrite_metadata(out / "flat" / "decoder.onnx", d / "flat-not-ours.onnx",
                      lambda p: {k: v for k, v in p.items() if not k.startswith(META)})
    return d


def make_fixtures(out: Path, kinds: tuple[str, ...] = KINDS) -> Path:
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    out.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        started = time.perf_counter()
        make_kind(out, kind)
        print(f"{kind}: {time.perf_counter() - started:.1f} s", file=sys.stderr)
    if {"flat", "conv"} <= set(kinds):
        make_variants(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="directory to write the fixtures into (re-used when present)")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        parser.error(f"--kinds: unknown {unknown[0]!r}; expected some of {', '.join(KINDS)}")
    make_fixtures(args.out, kinds)
    print(args.out)


if __name__ == "__main__":
    main()
