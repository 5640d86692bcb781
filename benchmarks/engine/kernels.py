"""Which CPU kernels a run's process computes with, so that a grid made on several CPUs keeps its bits.

torch picks its kernels by instruction set (AVX-512, AVX2, ...) when it loads, and oneDNN, which runs our
convolutions, picks its own; kernels of different sets add in different orders, so the same run differs
from its first step on. Both can be capped from the environment, before torch loads:
``ATEN_CPU_CAPABILITY`` and ``ONEDNN_MAX_CPU_ISA``. Measured once: an AVX-512 AMD EPYC capped at AVX2
rewrote a Fashion-MNIST FedAvg run of suite ``cpu_regime`` that an AVX2 AMD EPYC had made, byte for byte
(178 of 178 rows of rounds.csv). MKL's own dispatch (fully connected layers) is not capped, so machines
of another vendor are not covered by that measurement. The command line sets the caps for runs that ask
(``cpu_kernels``, an execution setting) by restarting itself (``benchmarks.cli.kernels``); the runner
refuses to compute a pinned CPU run with others. GPU runs ignore the pin: their kernels are the GPU's.
"""
from __future__ import annotations

import os

from benchmarks.core.typed import ConfigError

# The environment variables that cap the kernels; read once, when torch loads.
CAP_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")
# cpu_kernels -> (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA, what torch then reports as its capability)
KERNEL_SETS = {"default": ("default", "SSE41", ("DEFAULT", "NO AVX")), "avx2": ("avx2", "AVX2", ("AVX2",)),
               "avx512": ("avx512", "AVX512_CORE", ("AVX512",))}


class KernelMismatch(ConfigError):
    """This process or CPU cannot compute with the kernel set a run pins."""


def pinned(cfg) -> str:
    """The kernel set ``cfg`` pins, '' for none or for a run on a GPU."""
    return cfg.execution.cpu_kernels if str(cfg.device).startswith("cpu") else ""


def kernel_env(cpu_kernels: str) -> dict[str, str]:
    """The environment that caps a process at ``cpu_kernels`` (empty for '': no cap)."""
    return dict(zip(CAP_VARIABLES, KERNEL_SETS[cpu_kernels][:2])) if cpu_kernels else {}


def capped_at(cpu_kernels: str) -> bool:
    """Whether this process's environment holds the caps of ``cpu_kernels``."""
    return all(os.environ.get(name) == value for name, value in kernel_env(cpu_kernels).items())


def env_words(cpu_kernels: str) -> str:
    """The caps of ``cpu_kernels`` as a shell would set them: ``NAME=value NAME=value``."""
    return " ".join(f"{name}={value}" for name, value in kernel_env(cpu_kernels).items())


def check_hardware(cpu_kernels: str) -> None:
    """KernelMismatch unless this CPU has the instructions of ``cpu_kernels`` (torch takes the cap's word for
    it, and a CPU without them would die of an illegal instruction)."""
    import torch
    has = {"default": lambda: True, "avx2": torch.cpu._is_avx2_supported,
           "avx512": torch.cpu._is_avx512_supported}
    if cpu_kernels and not has[cpu_kernels]():
        raise KernelMismatch(f"cpu_kernels: this CPU has no {cpu_kernels} instructions; run the pinned runs on one "
                             "that has, or unpin them with --set cpu_kernels= (their bits then differ)")


def check_kernels(cfg) -> None:
    """KernelMismatch, one line, unless this process computes with the kernel set ``cfg`` pins."""
    import torch
    cpu_kernels = pinned(cfg)
    if not cpu_kernels:
        return
    check_hardware(cpu_kernels)
    running = torch.backends.cpu.get_cpu_capability()
    if running not in KERNEL_SETS[cpu_kernels][2] or not capped_at(cpu_kernels):
        raise KernelMismatch(
            f"cpu_kernels: the run asks for {cpu_kernels} kernels, this process computes with {running} "
            f"(ATEN_CPU_CAPABILITY={os.environ.get('ATEN_CPU_CAPABILITY', '')!r}, ONEDNN_MAX_CPU_ISA="
            f"{os.environ.get('ONEDNN_MAX_CPU_ISA', '')!r}); start it with `hetbench run` or `sweep`, which set "
            f"{env_words(cpu_kernels)} themselves, or set them before Python starts")


def running_kernels() -> dict[str, str]:
    """What this process computes with, as a checkpoint records it."""
    import torch
    return {"capability": torch.backends.cpu.get_cpu_capability(),
            "aten": os.environ.get("ATEN_CPU_CAPABILITY", ""), "onednn": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}
