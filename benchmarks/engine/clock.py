"""Two clocks for every timed part of a run: wall seconds (what its user waits) and the process's CPU
seconds, summed over its threads (what the work cost). A process that is paused (SIGSTOP), or that waits
for a core other processes hold, accrues wall seconds but no CPU seconds, so on a shared or paused host
only the CPU clock measures the work."""
from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Elapsed:
    wall: float = 0.0
    cpu: float = 0.0

    def __add__(self, other: "Elapsed") -> "Elapsed":
        return Elapsed(self.wall + other.wall, self.cpu + other.cpu)


class Stopwatch:
    """Started on creation; ``elapsed()`` reads both clocks since then."""

    def __init__(self) -> None:
        self.wall_start = time.perf_counter()
        self.cpu_start = time.process_time()

    def elapsed(self) -> Elapsed:
        return Elapsed(time.perf_counter() - self.wall_start, time.process_time() - self.cpu_start)
