"""Start runs under the CPU kernel set their config pins (``cpu_kernels``; ``benchmarks.engine.kernels``).

The caps are read when torch loads, so a command whose runs ask for a kernel set this process lacks
restarts itself once, with the same interpreter options and arguments, with ``ATEN_CPU_CAPABILITY`` and
``ONEDNN_MAX_CPU_ISA`` in its environment (as ``allocator`` does for malloc); a sweep's or a tuner's
worker processes inherit them, and Ray tasks get them in their runtime environment. Called from the
command line only: an in-process caller (a test, a notebook) gets the runner's one-line refusal instead.
"""
from __future__ import annotations

import os
import sys

from benchmarks.core.typed import ConfigError
from benchmarks.engine.kernels import capped_at, check_hardware, env_words, kernel_env, pinned


def ensure_kernels(cells, may_restart: bool) -> None:
    """Restart this command under the kernel set ``cells`` pin, unless it already runs under it."""
    wanted = sorted({pinned(cfg) for cfg in cells} - {""})
    if not wanted:
        return
    if len(wanted) > 1:
        raise ConfigError(f"cpu_kernels: these runs pin {', '.join(wanted)}; one process computes with one "
                          "kernel set, so run them in separate commands")
    check_hardware(wanted[0])
    if capped_at(wanted[0]) or not may_restart:
        return
    print(f"cpu_kernels = {wanted[0]}: restarting with {env_words(wanted[0])}", file=sys.stderr, flush=True)
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], {**os.environ, **kernel_env(wanted[0])})
