"""Avoid glibc malloc's page-fault churn, which costs our conv training up to 45% on CPU.

glibc returns large freed blocks to the OS and faults them back in on every step. Raising its mmap and
trim thresholds (read only at process start, hence the re-exec) keeps that memory; tcmalloc, when
Debian's libtcmalloc-minimal4 is installed, does the same and is preferred. Set
``HETBENCH_ALLOCATOR=system`` to keep the default allocator (e.g. to measure the difference).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

TCMALLOC_CANDIDATES = ("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
                       "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4")
GLIBC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}
MARK = "HETBENCH_ALLOCATOR_SET"


def allocator_env() -> dict[str, str]:
    """The environment variables that select the fast allocator on this machine."""
    env = dict(GLIBC_SETTINGS)
    for candidate in TCMALLOC_CANDIDATES:
        if Path(candidate).exists():
            preload = os.environ.get("LD_PRELOAD", "")
            if candidate not in preload:
                env["LD_PRELOAD"] = f"{candidate} {preload}".strip()
            break
    return env


def ensure_fast_allocator() -> None:
    """Re-exec the current Python command once with the allocator settings in its environment."""
    if os.environ.get(MARK) or sys.platform != "linux":
        return
    env = {**os.environ, **allocator_env(), MARK: "1"}
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks", *sys.argv[1:]], env)
