"""Bad input to the runtime: one RuntimeInputError naming the rule, never an onnxruntime or
numpy exception."""

from __future__ import annotations

import numpy as np
import pytest

from vae_export_runtime import RuntimeInputError, VAEDecoder, VAEEncoder


def refused(call, *fragments: str) -> str:
    with pytest.raises(RuntimeInputError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_a_graph_that_is_not_ours(root):
    refused(lambda: VAEDecoder(root / "not-ours.onnx"), "not-ours.onnx: not a vae-export graph",
            "vae_export.role")


def test_a_truncated_graph(root, tmp_path):
    data = (root / "flat" / "decoder.onnx").read_bytes()
    (tmp_path / "decoder.onnx").write_bytes(data[: len(data) // 2])
    refused(lambda: VAEDecoder(tmp_path / "decoder.onnx"), "decoder.onnx: ONNX Runtime cannot load it")


def test_a_missing_file_or_not_a_path(root, tmp_path):
    refused(lambda: VAEDecoder(tmp_path / "nope.onnx"), "nope.onnx: file not found")
    refused(lambda: VAEDecoder(3.5), "path: expected a file path, found float")


def test_the_wrong_graph_for_the_class(root):
    refused(lambda: VAEDecoder(root / "flat" / "encoder.onnx"), "expected a decoder graph z -> x_hat")


@pytest.mark.parametrize("z, fragments", [
    (np.zeros((2, 3, 16)), ["z: expected shape [batch, 16], found [2, 3, 16]"]),
    (np.zeros(16), ["z: expected shape [batch, 16], found [16]"]),
    (np.zeros((2, 15)), ["z: expected shape [batch, 16], found [2, 15]"]),
    (np.zeros((0, 16)), ["z: expected at least one item in the batch, found 0"]),
    (np.full((1, 16), np.nan), ["z: contains NaN or Inf"]),
    (np.zeros((1, 16), complex), ["z: expected a real-valued array, found dtype complex128"]),
    ([[0.0] * 16, [0.0] * 3], ["z: expected an array"]),
])
def test_latents_of_the_wrong_shape_or_values(root, z, fragments):
    decoder = VAEDecoder(root / "flat" / "decoder.onnx")
    refused(lambda: decoder.decode(z), *fragments)


@pytest.mark.parametrize("kwargs, fragments", [
    ({"labels": 10}, ["labels: expected class indices 0..9, found 10..10"]),
    ({"labels": [-1, 2]}, ["labels: expected class indices 0..9, found -1..2"]),
    ({"labels": [1, 2, 3]}, ["labels: expected one class index or 2 of them"]),
    ({"labels": 1.5}, ["labels: expected class indices 0..9, found float64"]),
    ({"y": np.full((2, 10), 0.5, np.float32)}, ["y: each row must sum to 1"]),
    ({}, ["this graph is conditional on 10 classes; pass labels="]),
])
def test_labels_out_of_range(root, kwargs, fragments):
    decoder = VAEDecoder(root / "cond" / "decoder.onnx")
    refused(lambda: decoder.decode(np.zeros((2, 8), np.float32), **kwargs), *fragments)


def test_a_class_for_an_unconditional_decoder(root):
    decoder = VAEDecoder(root / "flat" / "decoder.onnx")
    refused(lambda: decoder.sample(2, label=3), "labels: this graph is not conditional")


@pytest.mark.parametrize("kwargs, fragments", [
    ({"tile": 0}, ["tile: expected an integer from 1 to 65536, found 0"]),
    ({"tile": 70000}, ["tile: expected an integer from 1 to 65536, found 70000"]),
    ({"tile": "16"}, ["tile: expected an integer from 1 to 65536, found str '16'"]),
    ({"tile": 6}, ["tile: 6 latent cells with overlap 0.25 do not tile evenly"]),
    ({"tile": 16, "overlap": "0.25"}, ["overlap: expected a fraction in [0, 1), found str '0.25'"]),
    ({"tile": 16, "overlap": 1.0}, ["overlap: expected a fraction in [0, 1), found 1.0"]),
])
def test_tiles(root, kwargs, fragments):
    decoder = VAEDecoder(root / "kl" / "decoder.onnx")
    refused(lambda: decoder.decode(np.zeros((1, 4, 24, 24), np.float32), **kwargs), *fragments)


def test_tiles_need_a_symbolic_size(root):
    decoder = VAEDecoder(root / "flat" / "decoder.onnx")
    refused(lambda: decoder.decode(np.zeros((1, 16)), tile=16), "tile: tiled decoding needs a decoder with a "
            "symbolic size")


@pytest.mark.parametrize("size, fragments", [
    ((30, 30), ["size: expected (height, width), positive multiples of 4, found (30, 30)"]),
    (5, ["size: expected (height, width), positive multiples of 4, found 5"]),
    ((28,), ["found (28,)"]),
    ((28.0, 28.0), ["found (28.0, 28.0)"]),
    ((0, 28), ["found (0, 28)"]),
    ((100000, 100000), ["size: 100000x100000 has more than 67108864 pixels (8192x8192 at most)"]),
    ((16384, 8192), ["size: 16384x8192 has more than 67108864 pixels"]),  # 1 channel: within the values bound
])
def test_sizes(root, size, fragments):
    decoder = VAEDecoder(root / "conv" / "decoder.onnx")
    refused(lambda: decoder.sample(1, seed=0, size=size), *fragments)


def test_a_size_for_a_fixed_size_decoder(root):
    decoder = VAEDecoder(root / "flat" / "decoder.onnx")
    refused(lambda: decoder.sample(1, size=(56, 56)), "size: this decoder makes [28, 28] images only")


@pytest.mark.parametrize("call, fragments", [
    (lambda d: d.sample(0), ["n: expected an integer from 1 to 65536, found 0"]),
    (lambda d: d.sample(True), ["n: expected an integer from 1 to 65536, found bool True"]),
    (lambda d: d.sample(2, seed=-1), ["seed: expected an integer from 0 to 9223372036854775807, found -1"]),
    (lambda d: d.sample(2, temperature=0), ["temperature: expected a number in (0, 10], found 0"]),
    (lambda d: d.interpolate(np.zeros(16), np.zeros(16), steps=1), ["steps: expected an integer from 2 to 4096"]),
    (lambda d: d.interpolate(np.zeros(16), np.zeros(15)), ["z1: expected shape [batch, 16], found [1, 15]"]),
])
def test_counts_and_seeds(root, call, fragments):
    refused(lambda: call(VAEDecoder(root / "flat" / "decoder.onnx")), *fragments)


def test_images_of_the_wrong_size_for_the_encoder(root):
    encoder = VAEEncoder(root / "conv" / "encoder.onnx")
    refused(lambda: encoder.encode(np.zeros((1, 1, 30, 30))),
            "x: expected shape [batch, 1, height, width] (height and width multiples of 4), found [1, 1, 30, 30]")


def test_a_symbolic_size_graph_without_an_export_size_needs_a_size(root):
    """Graphs exported before `export_size` was recorded: sample asks for the size."""
    decoder = VAEDecoder(root / "conv-without-export-size.onnx")
    assert decoder.default_size is None and decoder.sample(1, seed=0, size=(28, 28)).shape == (1, 1, 28, 28)
    refused(lambda: decoder.sample(1, seed=0), "size: this decoder has a symbolic image size and no recorded "
            "export size; pass size=(height, width), multiples of 4")
    assert VAEDecoder(root / "conv" / "decoder.onnx").default_size == (28, 28)
