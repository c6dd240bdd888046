"""Ray's own log output, kept off the user's terminal unless --verbose.

A job or server prints its own lines and, when it fails, one `Error:` line. Ray adds lines
from three places, each muted here at its source:
- its Python loggers ("ray", "ray.data", "ray.serve"; e.g. the token-authentication WARNING
  of `ray.init`): their level, and ray.init's `logging_level`; and its Python warnings (Ray
  Data's UserWarning on an actor pool larger than its input), which the CLI would show after
  a successful command: ignored when issued from a `ray` module;
- the workers' stdout/stderr, which Ray forwards to the driver: `log_to_driver=False`; and
  the raylet's error messages (e.g. "(raylet) Task ServeController.graceful_shutdown failed"
  as Serve shuts down), which the driver prints to stdout whatever log_to_driver says: the
  switch Ray's own debugger uses to silence them (`ray._private.worker._worker_logs_enabled`);
- the C++ core worker inside this process, which copies every ERROR-level line (e.g.
  core_worker.cc's note on actor constructor arguments) and every line logged before its log
  file is set up (GCS connection retries) to file descriptor 2. No Ray setting turns that copy
  off (RAY_BACKEND_LOG_LEVEL prints a line of its own saying it was read), so fd 2 is pointed
  at /dev/null and Python's `sys.stderr` at a duplicate of the terminal: our lines still
  reach the user, Ray's native ones stay in Ray's own log files (/tmp/ray/session_*/logs).
With --verbose nothing is muted and the workers' output is forwarded.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Any

RAY_LOGGERS = ("ray", "ray.data", "ray.serve")
_QUIET_LEVEL = logging.CRITICAL + 1  # above every level Ray logs at
_native_muted = False


def init_options(verbose: bool) -> dict[str, Any]:
    """ray.init's logging arguments."""
    return {"logging_level": logging.INFO if verbose else _QUIET_LEVEL, "log_to_driver": verbose}


def quiet_ray(verbose: bool) -> None:
    """Call before Ray starts and before anything holds on to `sys.stderr` (a progress bar)."""
    set_levels(verbose)
    if verbose:
        return
    warnings.filterwarnings("ignore", module=r"ray(\.|$)")
    _mute_native_stderr()
    import ray._private.worker as ray_worker

    if hasattr(ray_worker, "_worker_logs_enabled"):  # a private switch: absent in another Ray, nothing to do
        ray_worker._worker_logs_enabled = False


def set_levels(verbose: bool) -> None:
    """Ray's Python loggers; again after `import ray.data`, which configures its own logger."""
    for name in RAY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else _QUIET_LEVEL)


def _mute_native_stderr() -> None:
    global _native_muted
    if _native_muted:
        return
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (click's test runner, a notebook): nothing native reaches it
    if fd != 2:
        return
    sys.stderr.flush()
    terminal = os.dup(2)  # not inherited by Ray's child processes (dup's default)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    old = sys.stderr
    sys.stderr = os.fdopen(terminal, "w", buffering=1, encoding=old.encoding, errors=old.errors)
    _native_muted = True
