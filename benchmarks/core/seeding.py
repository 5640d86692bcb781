"""Named, independent random streams derived from one run seed.

Each consumer (partition, client sampling, model init, each client's shuffling in each round, each
algorithm's server work) gets its own stream, so changing one part of a run never shifts another's
random numbers, and client sampling is identical across algorithms for the same seed.
"""
from __future__ import annotations

import hashlib


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed from ``seed`` and any keys (strings or ints); stable across runs and platforms."""
    text = repr((int(seed),) + tuple(keys)).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1
