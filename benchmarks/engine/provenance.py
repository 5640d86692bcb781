"""What decides a run's bits besides its config: library versions, the CPU and the kernels torch
dispatches to, the GPU. Recorded in every summary.json and shown in the reports' provenance."""
from __future__ import annotations

import os
import platform
from functools import lru_cache

import numpy
import torch


@lru_cache(maxsize=1)
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def kernel_libraries() -> dict:
    """oneDNN and BLAS as torch was built with them (from ``torch.__config__.show()``), and the
    environment variables that cap the kernels' instruction set (``benchmarks.engine.kernels``)."""
    shown = torch.__config__.show()
    onednn = next((line.split("MKL-DNN", 1)[1].split("(")[0].strip() for line in shown.splitlines()
                   if "MKL-DNN" in line), "absent")
    blas = next((part.split("=", 1)[1] for part in shown.replace(",", " ").split() if part.startswith("BLAS_INFO=")),
                "unknown")
    return {"onednn": onednn, "blas": blas, "aten_cpu_capability_env": os.environ.get("ATEN_CPU_CAPABILITY", ""),
            "onednn_max_cpu_isa_env": os.environ.get("ONEDNN_MAX_CPU_ISA", "")}


def versions(device: str = "cpu") -> dict:
    """Versions and hardware facts that can change floating-point results."""
    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
           "platform": platform.platform(), "hetbench": "0.1.0", "cpu": cpu_model(),
           "cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "mkldnn": torch.backends.mkldnn.is_available(), **kernel_libraries()}
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
        out["cuda"] = torch.version.cuda
    return out
