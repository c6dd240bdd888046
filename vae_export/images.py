"""Pictures as PNG with Pillow: image grids and a small latency plot (no matplotlib needed)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from vae_export.artifacts import atomic_write_bytes
from vae_export.reports import BenchRow


def grid(images: np.ndarray, columns: int | None = None, scale: int = 2, pad: int = 2) -> Image.Image:
    """[N, C, H, W] in [0, 1] -> one greyscale (C=1) or RGB (C=3) image, white between tiles."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    canvas = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        canvas[top : top + h, left : left + w] = np.transpose(img, (1, 2, 0))
    pixels = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    image = Image.fromarray(pixels[..., 0] if c == 1 else pixels, mode="L" if c == 1 else "RGB")
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def save_png(image: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def latency_plot(results: list[BenchRow], graph: str = "decoder", size: tuple[int, int] = (640, 400)) -> Image.Image:
    """p50 latency (ms, log scale) against batch size (log scale), one line per engine/variant."""
    rows = [r for r in results if r.graph == graph]
    series: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        # one line per engine, precision and variant (torch:bf16 and openvino are their own lines)
        label = f"{r.engine_label} (eager)" if r.engine == "torch" else f"{r.engine_label} {r.variant}"
        series.setdefault(label, []).append((r.batch, r.p50_ms))
    width, height = size
    left, right, top, bottom = 70, 170, 30, 50
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((left, 8), f"{graph} p50 latency vs batch size (log-log)", fill="black")
    if not rows:
        return image
    xs = [math.log10(b) for b, _ in sum(series.values(), [])]
    ys = [math.log10(max(t, 1e-6)) for _, t in sum(series.values(), [])]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = math.floor(min(ys)), math.ceil(max(ys)) if math.ceil(max(ys)) > math.floor(min(ys)) else math.floor(min(ys)) + 1

    def px(b: float, t: float) -> tuple[float, float]:
        fx = (math.log10(b) - x0) / (x1 - x0)
        fy = (math.log10(max(t, 1e-6)) - y0) / (y1 - y0)
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for decade in range(int(y0), int(y1) + 1):
        _, y = px(1 if x0 == 0 else 10**x0, 10.0**decade)
        draw.line([left, y, width - right, y], fill=(220, 220, 220))
        draw.text((8, y - 6), f"{10.0**decade:g} ms", fill="black")
    for b in sorted({b for b, _ in sum(series.values(), [])}):
        x, _ = px(b, 10.0**y0)
        draw.text((x - 8, height - bottom + 6), str(b), fill="black")
    draw.text(((left + width - right) // 2 - 20, height - 22), "batch size", fill="black")
    for i, (label, points) in enumerate(sorted(series.items())):
        colour = _COLOURS[i % len(_COLOURS)]
        coords = [px(b, t) for b, t in sorted(points)]
        if len(coords) > 1:
            draw.line(coords, fill=colour, width=2)
        for x, y in coords:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        draw.text((width - right + 10, top + 16 * i), label, fill=colour)
    return image
