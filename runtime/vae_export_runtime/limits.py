"""Stated bounds on every count and size a user, a script, a file or a request can pass, in
one place: the runtime, the toolkit's CLI and the server all check against these, so that no
number can ask for absurd memory or time before a check runs."""

from __future__ import annotations

MAX_BATCH = 65536  # images or latents per call: 205 MB of 28x28 float32 images
MAX_STEPS = 4096  # interpolation points
MAX_SAMPLES = 1024  # anomaly score draws per image
MAX_SEED = 2**63 - 1  # seeds are non-negative integers below 2^63 (the portable generator's key)
MAX_ELEMENTS = 1 << 28  # values in one image, latent or tensor (1 GiB of float32)
MAX_PIXELS = 1 << 26  # height x width of one image (8192 x 8192): with up to 4 channels, MAX_ELEMENTS values
MAX_TILE = 1 << 16  # latent cells per tile side
MAX_TEMPERATURE = 10.0  # the prior's scale for sampling
DEVICES = ("cpu", "cuda")  # where graphs run: ONNX Runtime's CPU provider, or CUDA (onnxruntime-gpu)
