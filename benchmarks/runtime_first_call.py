"""What an app pays on first use of the runtime: the import, opening a decoder graph, and the
first `sample(16)` call. Run it with the python of an environment holding only the runtime:

    /usr/bin/time -f "peak RSS %M KB" RUNTIME_VENV/bin/python benchmarks/runtime_first_call.py DECODER.onnx
"""

import sys
import time

started = time.perf_counter()
from vae_export_runtime import VAEDecoder  # noqa: E402  (the import is what is timed)

imported = time.perf_counter()
decoder = VAEDecoder(sys.argv[1])
opened = time.perf_counter()
decoder.sample(16, seed=0)
sampled = time.perf_counter()
print(f"import {imported - started:.3f} s, open {opened - imported:.3f} s, first sample(16) {sampled - opened:.4f} s")
