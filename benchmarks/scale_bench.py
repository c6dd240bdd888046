"""Scale-out figures for benchmarks/RESULTS.md ("Scale-out"):

1. `score` over the 70,000 MNIST images (train + test IDX files, as one .npy) with the local
   engine and the Ray engine (1 and 2 actors): rows per second with Ray's start-up included
   and excluded, and in steady state (after the first batch, so without actor start-up);
   outputs compared row by row.
2. The Serve app under a bounded load on 127.0.0.1: CLIENTS threads, REQUESTS requests of
   batch 1 to /decode, with dynamic batching on (max batch 16) and off (max batch 1): p50/p99
   latency, requests per second, failures.

Runs are interleaved and repeated (--repeats) because the machine is shared.

    .venv/bin/python benchmarks/scale_bench.py --artifacts ARTIFACTS --mnist ../shared/data/mnist --json scale.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from vae_export.idx import read_idx
from vae_export.scale.inputs import open_source
from vae_export.scale.jobs import parquet_writer, run_job, start_ray
from vae_export.scale.tasks import make_task


def score_runs(artifacts: Path, mnist: Path, repeats: int, batch_size: int) -> dict:
    import ray

    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    images = np.concatenate([read_idx(mnist / "train-images-idx3-ubyte.gz"), read_idx(mnist / "t10k-images-idx3-ubyte.gz")])
    np.save(work / "mnist70k.npy", images[:, None])
    task = make_task("score", artifacts, open_source(work / "mnist70k.npy"))
    n = len(images)
    t0 = time.perf_counter()
    start_ray(None)
    startup = time.perf_counter() - t0
    rows: dict[str, list[dict]] = {"local": [], "ray-1": [], "ray-2": []}
    outputs: dict[str, Path] = {}
    for _ in range(repeats):
        for name in rows:
            engine, workers = ("local", None) if name == "local" else ("ray", int(name[-1]))
            first: list[float] = []
            out = work / f"{name}.parquet"
            started = time.perf_counter()
            result = run_job(task, n, parquet_writer(out, task.schema()), engine, batch_size=batch_size,
                             workers=workers, on_rows=lambda k: first or first.append(time.perf_counter()))
            total = time.perf_counter() - started
            steady = (n - batch_size) / (started + total - first[0])  # rows after the first batch
            rows[name].append({"seconds": result.seconds, "rows_per_s": n / result.seconds,
                               "steady_rows_per_s": steady,
                               "rows_per_s_with_startup": n / (result.seconds + (startup if engine == "ray" else 0))})
            outputs[name] = out
            print(name, json.dumps(rows[name][-1]), flush=True)
    local = pq.read_table(outputs["local"])
    same = {}
    for name in ("ray-1", "ray-2"):
        other = pq.read_table(outputs[name])
        same[name] = {"ids_identical": local.column("id").equals(other.column("id")),
                      "max_abs_diff": float(np.max(np.abs(local.column("score").to_numpy() - other.column("score").to_numpy())))}
    ray.shutdown()
    return {"rows": n, "batch_size": batch_size, "ray_startup_s": startup, "runs": rows, "same_output": same}


def _load(port: int, zs: np.ndarray, clients: int) -> dict:
    """Each client thread keeps one HTTP/1.1 connection and sends its share of requests."""
    shares = np.array_split(np.arange(len(zs)), clients)

    def client(indices: np.ndarray) -> list[tuple[int, float]]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        out = []
        for i in indices:
            body = json.dumps({"z": [zs[i].tolist()]})
            started = time.perf_counter()
            try:
                connection.request("POST", "/decode", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                payload = response.read()
                ok = response.status == 200 and len(json.loads(payload)["x_hat"]) == 1
            except (OSError, http.client.HTTPException, ValueError, KeyError):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            out.append((ok, time.perf_counter() - started))
        connection.close()
        return out

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for part in pool.map(client, shares) for r in part]
    wall = time.perf_counter() - started
    latencies = np.array([t for _, t in results]) * 1000
    return {"requests": len(results), "failed": sum(not ok for ok, _ in results), "rps": len(results) / wall,
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99))}


def serve_runs(artifacts: Path, repeats: int, clients: int, requests: int) -> dict:
    import ray
    from ray import serve

    from vae_export.scale.serve import APP_NAME, ServeConfig, build_app, start_server, stop_server

    port = 8765
    on = ServeConfig(artifacts.resolve(), max_batch_size=16, batch_wait_s=0.002)
    off = ServeConfig(artifacts.resolve(), max_batch_size=1, batch_wait_s=0.0)
    owned = start_server(on, "127.0.0.1", port)
    zs = np.random.default_rng(0).standard_normal((requests, 32)).astype(np.float32)
    runs: dict[str, list[dict]] = {"batching on": [], "batching off": []}
    for _ in range(repeats):
        for name, config in (("batching on", on), ("batching off", off)):
            serve.run(build_app(config), name=APP_NAME, route_prefix="/")
            _load(port, zs[:200], clients)  # warm-up
            runs[name].append(_load(port, zs, clients))
            print(name, json.dumps(runs[name][-1]), flush=True)
    stop_server(owned)
    if ray.is_initialized():
        ray.shutdown()
    return {"clients": clients, "requests_per_run": requests, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--mnist", type=Path, default=Path("../shared/data/mnist"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--skip-score", action="store_true")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Ray's OOM killer watches the whole host (95 %); on a shared machine other people's
    # work can reach that while ours uses a few hundred MB, so it stays off for the bench.
    os.environ.setdefault("RAY_memory_monitor_refresh_ms", "0")
    report = {"machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version()}}
    if not args.skip_score:
        report["score"] = score_runs(args.artifacts, args.mnist, args.repeats, args.batch_size)
    if not args.skip_serve:
        report["serve"] = serve_runs(args.artifacts, args.repeats, args.clients, args.requests)
    for section in ("score", "serve"):
        for name, runs in report.get(section, {}).get("runs", {}).items():
            keys = runs[0].keys()
            print(section, name, {k: round(statistics.median(r[k] for r in runs), 2) for k in keys})
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
