"""vae-export: split a VAE into encoder/decoder ONNX graphs, prove parity, benchmark, embed.

Importing the package must stay cheap and torch-free: apps that only embed the decoder
(`vae_export.runtime`) ship numpy + onnxruntime and nothing else.
"""

__version__ = "0.1.0"
