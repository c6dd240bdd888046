"""Peak resident memory of one call, measured in the running process (Linux).

Why not `resource.getrusage().ru_maxrss`: it is the process's peak since it started and can
only grow, so after the largest call every later call reads the same number. Linux keeps the
same peak as `VmHWM` in /proc/self/status and lets a process reset it to the current RSS by
writing "5" to /proc/self/clear_refs (since Linux 4.0). So a call's peak is: reset, note the
RSS, run, read VmHWM. `malloc_trim` first hands memory that earlier calls freed back to the
system, so that a call which reuses it is not under-counted: its pages then count as growth.

Where the files are missing or not writable (other systems, some sandboxes) `supported()` is
False and measurements are None, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
MIB = 1 << 20
T = TypeVar("T")


def _status_kib(key: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def rss_mib() -> float | None:
    """The resident set size now, in MiB (None where unknown)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib / 1024


def peak_mib() -> float | None:
    """The peak resident set size since the last reset (or the start), in MiB."""
    kib = _status_kib("VmHWM")
    return None if kib is None else kib / 1024


def reset_peak() -> bool:
    """Reset the peak to the current RSS; False where the system does not allow it."""
    try:
        _CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


_libc: Any = None


def trim() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim; nothing elsewhere)."""
    global _libc
    if _libc is None:
        import ctypes  # here, not at import: ctypes.util pulls in subprocess (and fcntl)
        import ctypes.util

        name = ctypes.util.find_library("c")
        try:
            _libc = ctypes.CDLL(name) if name else False
        except OSError:
            _libc = False
    if _libc and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def supported() -> bool:
    return rss_mib() is not None and reset_peak()


@dataclass
class Peak:
    """A measured call: RSS before it (after trimming), and the peak while it ran, in MiB."""

    before_mib: float
    peak_mib: float
    after_mib: float

    @property
    def growth_mib(self) -> float:
        """How far the call took RSS above where it started."""
        return max(self.peak_mib - self.before_mib, 0.0)

    @property
    def retained_mib(self) -> float:
        """What the call left allocated (arenas, caches, outputs), freed heap returned first."""
        return self.after_mib - self.before_mib


def measure(call: Callable[[], T]) -> tuple[T, Peak | None]:
    """`call()`'s result and its Peak (None where peaks cannot be reset here)."""
    trim()
    if not reset_peak():
        return call(), None
    before = rss_mib()
    result = call()
    peak = peak_mib()
    trim()  # what the call freed is not what it retained (a parsed model's freed heap, say)
    after = rss_mib()
    if before is None or peak is None or after is None:
        return result, None
    return result, Peak(before, max(peak, before), after)
