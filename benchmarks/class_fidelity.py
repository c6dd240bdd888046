"""Class fidelity of a conditional decoder: do images sampled with label k look like a k?

Judged by a classifier that is not part of the model: a small CNN trained here on the real
MNIST training images (about 99 % test accuracy; cached in --work). For each temperature T,
`--per-class` images of every class are sampled with the torch-free runtime from
z ~ N(0, T^2 I) with that label, and the CNN's predictions are compared with the labels.

    python benchmarks/class_fidelity.py --artifacts artifacts-cond --data-dir ../shared/data/mnist \
        --json fidelity.json

Prints a table (overall and per class, per temperature) and writes it as JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vae_export.data import load_dataset
from vae_export.runtime import VAEDecoder

TEMPERATURES = (0.5, 0.7, 1.0)


def judge_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def train_judge(data_dir: Path, work: Path, epochs: int = 2, seed: int = 0) -> tuple[nn.Module, float]:
    """The CNN and its MNIST test accuracy; trained once, then loaded from `work`."""
    from safetensors.torch import load_file, save_file

    data = load_dataset("mnist", data_dir)
    model = judge_cnn()
    path = work / "mnist_judge_cnn.safetensors"
    if path.is_file():
        model.load_state_dict(load_file(path))
    else:
        torch.manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(epochs):
            order = torch.randperm(len(data.train))
            model.train()
            for start in range(0, len(order), 128):
                idx = order[start : start + 128]
                loss = F.cross_entropy(model(data.train[idx]), data.train_labels[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        work.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), str(path))
    model.eval()
    return model, accuracy(model, data.test.numpy(), data.test_labels.numpy())


@torch.inference_mode()
def predict(model: nn.Module, images: np.ndarray) -> np.ndarray:
    return np.concatenate([model(torch.from_numpy(images[i : i + 1000])).argmax(1).numpy()
                           for i in range(0, len(images), 1000)])


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(predict(model, images) == labels))


def fidelity(decoder: VAEDecoder, judge: nn.Module, per_class: int, temperature: float, seed: int) -> dict:
    k = decoder.num_classes
    labels = np.repeat(np.arange(k), per_class)
    images = decoder.sample(len(labels), seed=seed, labels=labels, temperature=temperature)
    hits = predict(judge, images) == labels
    return {"temperature": temperature, "samples": int(len(labels)), "accuracy": float(hits.mean()),
            "per_class": [float(hits[labels == c].mean()) for c in range(k)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="a conditional model's exported graphs")
    parser.add_argument("--data-dir", type=Path, required=True, help="MNIST IDX files (to train the judge)")
    parser.add_argument("--work", type=Path, default=Path(".fidelity-cache"), help="where the judge CNN is cached")
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    started = time.perf_counter()
    judge, judge_accuracy = train_judge(args.data_dir, args.work)
    decoder = VAEDecoder(args.artifacts / "decoder.onnx")
    if not decoder.num_classes:
        raise SystemExit(f"{args.artifacts / 'decoder.onnx'}: not a conditional decoder")
    rows = [fidelity(decoder, judge, args.per_class, t, args.seed) for t in TEMPERATURES]
    metrics_path = args.artifacts / "train_metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    report = {"judge": "small CNN (2 conv + 2 fc) trained 2 epochs on the MNIST training images",
              "judge_test_accuracy": judge_accuracy, "model": metrics.get("model_config"),
              "train_config": metrics.get("train_config"), "final_test_loss": metrics.get("final_test_loss"),
              "results": rows, "seconds": time.perf_counter() - started}
    print(f"judge CNN: {100 * judge_accuracy:.2f} % on the MNIST test split")
    print("T     all    " + " ".join(f"{c:>5}" for c in range(decoder.num_classes)))
    for r in rows:
        print(f"{r['temperature']:<4}  {100 * r['accuracy']:5.1f}  " + " ".join(f"{100 * a:5.1f}" for a in r["per_class"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
