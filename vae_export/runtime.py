"""The torch-free runtime, kept importable from its first home: `vae_export.runtime` is the
`vae-export-runtime` package (`vae_export_runtime`), which apps install on its own
(numpy + onnxruntime only). New code imports `vae_export_runtime`."""

from vae_export_runtime import VAE, RuntimeInputError, VAEClassifier, VAEDecoder, VAEEncoder, VAEExportError
from vae_export_runtime.checks import as_array, check_count, check_seed

__all__ = ["VAE", "VAEClassifier", "VAEDecoder", "VAEEncoder", "RuntimeInputError", "VAEExportError", "as_array",
           "check_count", "check_seed"]
