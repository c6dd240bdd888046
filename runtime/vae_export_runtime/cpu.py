"""What CPU this is, as far as engine choice cares: its model name and the vector flags that
decide which kernels and precisions an engine can use (AVX2, AVX-512, VNNI, BF16, AMX).

A recorded engine recommendation carries these, so that a manifest copied to another machine
is recognised as measured elsewhere (`recommend.py`). Standard library only.
"""

from __future__ import annotations

import hashlib
import platform
from functools import lru_cache
from pathlib import Path

# The flags that change which engine or precision wins: vector width, int8 dot products,
# bfloat16 arithmetic and AMX tiles. Other flags (cache, virtualisation) do not.
RELEVANT_FLAGS = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
                  "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile", "asimd", "sve")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bfloat16 arithmetic (x86); without it bf16 is emulated


@lru_cache(maxsize=1)
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")[:1 << 20]
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo; else what the platform module says)."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()[:200]
    return (platform.processor() or platform.machine())[:200]


def cpu_flags() -> tuple[str, ...]:
    """The RELEVANT_FLAGS this CPU has, sorted (empty where /proc/cpuinfo is not readable)."""
    for line in _cpuinfo().splitlines():
        if line.startswith(("flags", "Features")):
            present = set(line.split(":", 1)[1].split())
            return tuple(sorted(f for f in RELEVANT_FLAGS if f in present))
    return ()


def has_bf16() -> bool:
    """Whether the CPU computes in bfloat16 natively (AVX-512 BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in BF16_FLAGS)


def fingerprint() -> str:
    """A short digest of the model name and relevant flags: equal on machines of one kind."""
    text = cpu_model() + "|" + ",".join(cpu_flags())
    return hashlib.sha256(text.encode()).hexdigest()[:16]
