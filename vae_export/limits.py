"""Every stated bound of the toolkit, in one place, so that no number a user, a file header or an
HTTP client passes can ask for absurd memory or time before a check runs. The bounds the
runtime shares (batch, steps, samples, seeds, values per image, tiles) are the runtime's own,
`vae_export_runtime.limits`, imported here: the CLI, the runtime and the server check the same
numbers. Torch-, numpy- and Ray-free: the CLI reads them at import time for its option ranges.
"""

from __future__ import annotations

from vae_export_runtime.limits import (DEVICES, MAX_BATCH, MAX_ELEMENTS, MAX_PIXELS, MAX_SAMPLES, MAX_SEED,  # noqa: F401
                                       MAX_STEPS, MAX_TEMPERATURE, MAX_TILE)

# ---- ExecuTorch programs ------------------------------------------------------------------------
# A .pte plans its buffers at its largest input when the app loads it: these defaults (a family
# may ask for smaller ones) keep the MLP and conv reference programs within megabytes.
PTE_MAX_BATCH = 64
PTE_MAX_LATENT_SIDE = 64  # 256-pixel images at stride 4, 512 at stride 8

# ---- command options ----------------------------------------------------------------------------
MAX_ITERATIONS = 1_000_000  # bench calls per row
MAX_MIN_TIME_S = 600.0  # bench time budget per row
# bench rounds per row: a baseline keeps one median per round, and judging it resamples them
# 4,000 times (abtest.unpaired), so this bounds that work (4,000 x 1,000 x 8 bytes = 32 MB)
MAX_ROUNDS = 1000
MAX_THREADS = 256
MAX_WIDTH = 65536  # --hidden-dim, --latent-dim
MAX_LABELS = 1 << 24  # --labels (the dataset bounds it further)

# ---- batch jobs ---------------------------------------------------------------------------------
# Rows of one job (input rows, or `generate -n`): 10^8 is 23 h of 28x28 images at the local
# engine's 12,200 images/s; 10^12 is a typo. The Ray engine's driver holds O(1) per job, not
# per row (jobs.py), so this bounds time and output size, not the driver's memory.
MAX_JOB_ROWS = 10**8
# An encoded image file (PNG/JPEG) is read whole before decoding: larger ones are refused
# unread (a sparse 16 GB file named .png). 64 MiB holds any image of 4096x4096 RGB, uncompressed.
MAX_IMAGE_FILE_BYTES = 64 * 1024**2
# score: z draws per model call (rows x --samples); the eps draws and decodes of one call
# are this many latents and images (65,536 x 784 float32 = 205 MB, the runtime's MAX_BATCH).
MAX_SCORE_DRAWS_PER_CALL = 65536

# ---- IDX files ----------------------------------------------------------------------------------
# A .gz IDX file is decompressed into memory (each worker holds it): at most 1 GiB of pixels,
# 1.37 million 28x28 images (MNIST is 70,000). A raw IDX file is memory-mapped, bounded by its
# real size only.
MAX_IDX_GZ_BYTES = 1 << 30
# deflate cannot compress better than 1032:1 (zlib's technical details), so a header claiming
# more than that many bytes per compressed byte cannot be telling the truth.
DEFLATE_MAX_RATIO = 1032

# ---- triton -------------------------------------------------------------------------------------
# From the field types of Triton's ModelConfig schema (model_config.proto): max_batch_size and
# instance_group.count are int32, max_queue_delay_microseconds is uint64. A larger number writes
# a config Triton refuses to load.
# max_batch_size: what the schema holds; real values are small (Triton allocates per batch)
MAX_TRITON_BATCH = 2**31 - 1
# model instances per model (each holds a session and its memory)
MAX_INSTANCES = 1024
# one hour: a longer queue delay is a typo, not a batching window
MAX_QUEUE_DELAY_US = 3_600_000_000

# ---- serve --------------------------------------------------------------------------------------
# Values (pixels x channels, or latent values) of one request's images, in or out: 2^20 is a
# 1024x1024 greyscale image, or 1,337 28x28 ones (more than --max-rows' default 1,024). The
# JSON answer of one request is then at most ~25 MB, a PNG grid at most ~5 MB.
MAX_REQUEST_VALUES = 1 << 20
# A request body: MAX_REQUEST_VALUES numbers at up to 32 bytes each ("-1.2345678901234567e-05, "
# is 25), so every request the value bound allows fits; read in a stream, stopped at the cap.
MAX_BODY_BYTES = 32 * MAX_REQUEST_VALUES
# JSON nesting: a request is an object holding a 4-D array (depth 5); 32 leaves room and refuses
# 100,000-deep bodies before the parser recurses.
MAX_JSON_DEPTH = 32
# Digits of a JSON integer: a float32 holds nothing longer meaningfully; Python refuses to
# parse more than 4,300 with a ValueError that is not a JSON error.
MAX_INT_DIGITS = 40
# Requests merged into one model call, and rows of one request (--max-batch-size, --max-rows).
MAX_SERVE_BATCH = 1024
MAX_SERVE_ROWS = MAX_BATCH  # the runtime's MAX_BATCH
MAX_REPLICAS = 256
