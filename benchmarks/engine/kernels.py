"""Which CPU kernels a run's process computes with, so that one grid gives the same bits on different CPUs.

torch picks its kernels by instruction set (AVX-512, AVX2, ...) when it loads, and oneDNN, which runs our
convolutions, picks its own; kernels of different sets add in different orders, so the same run differs
from its first step on. Both can be capped from the environment, before torch loads:
``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA``. Measured: an AVX-512 machine capped at AVX2 rewrote
a Fashion-MNIST FedAvg run of suite ``cpu_regime`` that an AVX2 machine had made, byte for byte (178 of
178 rows of rounds.csv). The command line sets them for a run that asks (``cpu_kernels``, an execution
setting) by restarting itself (``benchmarks.cli.kernels``); the runner refuses to compute with others.
"""
from __future__ import annotations

import os

import torch

from benchmarks.core.typed import ConfigError

# cpu_kernels -> (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, what torch then reports as its capability)
KERNEL_SETS = {"default": ("default", "SSE41", "DEFAULT"), "avx2": ("avx2", "AVX2", "AVX2"),
               "avx512": ("avx512", "AVX512_CORE", "AVX512")}


def kernel_env(cpu_kernels: str) -> dict[str, str]:
    """The environment that caps a process at ``cpu_kernels`` (empty for '': no cap)."""
    if not cpu_kernels:
        return {}
    aten, onednn, _ = KERNEL_SETS[cpu_kernels]
    return {"ATEN_CPU_CAPABILITY": aten, "ONEDNN_MAX_CPU_ISA": onednn}


def check_kernels(cpu_kernels: str) -> None:
    """ConfigError, one line, unless this process computes with the kernel set a run asks for."""
    if not cpu_kernels:
        return
    env = kernel_env(cpu_kernels)
    running = torch.backends.cpu.get_cpu_capability()
    wanted = KERNEL_SETS[cpu_kernels][2]
    if running != wanted or any(os.environ.get(k) != v for k, v in env.items()):
        raise ConfigError(
            f"cpu_kernels: the run asks for {cpu_kernels} kernels, this process computes with {running} "
            f"(ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')!r}, ONEDNN_MAX_CPU_ISA="
            f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '')!r}); start it with `hetbench`, which sets "
            f"{' '.join(f'{k}={v}' for k, v in env.items())} itself, or set them (a CPU without {wanted} "
            "cannot run it: use --set cpu_kernels= there)")
