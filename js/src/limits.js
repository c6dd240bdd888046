// Stated bounds on every count and size (vae_export_runtime/limits.py): the same numbers in
// every host, so that a call refused in Python is refused here with the same message.

export const MAX_BATCH = 65536; // images or latents per call
export const MAX_STEPS = 4096; // interpolation points
export const MAX_SAMPLES = 1024; // anomaly score draws per image
export const MAX_SEED = 2n ** 63n - 1n; // the portable generator's key is 64 bits, seeds below 2^63
export const MAX_ELEMENTS = 2 ** 28; // values in one image, latent or tensor
export const MAX_TILE = 2 ** 16; // latent cells per tile side
export const MAX_TEMPERATURE = 10; // the prior's scale for sampling
export const MAX_CLASSES = 1000; // codec: num_classes
export const MAX_STRIDE = 1024; // codec: stride
export const MAX_VALUE_CHARS = 2 ** 16; // codec: one metadata value
