"""Per-call cost of the run time limit (`ortsession.run_limited`: a RunOptions and the watchdog's
deadline) against a plain `session.run`, decoder at batch 1 (the smallest call, where a fixed cost
shows most). The two alternate in 20 rounds of 500 calls; prints the medians.

    .venv/bin/python benchmarks/run_limit_overhead.py artifacts/decoder.onnx
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from vae_export_runtime.contract import DECODER
from vae_export_runtime.session import make_session, run_limited


def main(path: Path) -> None:
    session = make_session(path, spec=DECODER)
    feeds = {"z": np.zeros((1, session.get_inputs()[0].shape[1]), np.float32)}
    plain: list[int] = []
    limited: list[int] = []
    for _ in range(20):
        for _ in range(500):
            start = time.perf_counter_ns()
            session.run(["x_hat"], feeds)
            plain.append(time.perf_counter_ns() - start)
        for _ in range(500):
            start = time.perf_counter_ns()
            run_limited(session, ["x_hat"], feeds, path)
            limited.append(time.perf_counter_ns() - start)
    p, q = np.median(plain) / 1e3, np.median(limited) / 1e3
    print(f"session.run p50 {p:.1f} us, run_limited p50 {q:.1f} us, overhead {q - p:.1f} us ({q / p:.2f}x)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "artifacts/decoder.onnx"))
