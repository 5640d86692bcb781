"""How far a result moves when the CPU kernels change, beside how far it moves between seeds (issue I).

torch picks its vectorised kernels by the CPU's instruction set (``torch.backends.cpu.
get_cpu_capability()``: AVX512, AVX2, ...), and ``ATEN_CPU_CAPABILITY`` can restrict them (``avx2``,
``default`` = no explicit vectorisation); each capability here also caps oneDNN's convolutions, as the
execution setting ``cpu_kernels`` does (``benchmarks.engine.kernels``). Other kernels sum in another order, so the bits change from
the first training step on; what matters is whether the *conclusions* move. For each algorithm this
runs one cell of a suite with seed 0 under every requested capability (each run in its own process,
since the variable is read when torch loads), and with further seeds under the machine's own
kernels, then prints the final test accuracy under each capability beside the seeds' spread.

``hetbench perf --portability --suite quick --alpha 0.04`` (all of the suite's algorithms; about
four quick runs per algorithm). Results go to a scratch folder, never to ``results/``.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.core.typed import ConfigError
from benchmarks.engine.kernels import CAP_VARIABLES, KERNEL_SETS, kernel_env
from benchmarks.experiments.suites import load_suite


def _cell(suite: str, algorithm: str, alpha: float, seed: int, overrides: list[str]) -> dict:
    cells = load_suite(suite, [f"algorithm={algorithm}", f"partition.alpha={alpha}", f"seed={seed}",
                               *overrides]).cells
    return cells[0].to_dict()


def run_cell(config: dict, results: Path, capability: str | None) -> float:
    """Final test accuracy of ``config`` run in a fresh process capped at ``capability`` (torch's and
    oneDNN's kernels, as ``cpu_kernels`` pins them; None: the machine's own kernels)."""
    env = {k: v for k, v in os.environ.items() if k not in CAP_VARIABLES}
    config = {**config, "cpu_kernels": capability or ""}  # the cell's own pin would refuse the other kernels
    env.update(kernel_env(capability or ""))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(config, fh)
    code = ("import json, sys; from benchmarks.engine.runner import run; "
            "from benchmarks.experiments.config import config_from_dict; "
            "print(run(config_from_dict(json.load(open(sys.argv[1]))), suite='portability', "
            "results=sys.argv[2], progress=False))")
    try:
        done = subprocess.run([sys.executable, "-c", code, fh.name, str(results)], env=env, check=True,
                              capture_output=True, text=True)
    finally:
        os.unlink(fh.name)
    summary = json.loads((Path(done.stdout.strip().splitlines()[-1]) / "summary.json").read_text())
    return summary["final"]["test_accuracy"]


def measure(suite: str = "quick", alpha: float = 0.04, capabilities: tuple[str, ...] = ("default",),
            seeds: tuple[int, ...] = (1, 2), algorithms: tuple[str, ...] | None = None,
            overrides: tuple[str, ...] = (), scratch: Path | None = None) -> list[dict]:
    """One row per algorithm: seed-0 accuracy under the machine's kernels and under each capability,
    and the standard deviation over seed 0 and ``seeds`` under the machine's kernels."""
    unknown = [c for c in capabilities if c not in KERNEL_SETS]
    if unknown:
        raise ConfigError(f"--capabilities: {', '.join(unknown)} is not one of {', '.join(KERNEL_SETS)}")
    names = algorithms or tuple(dict.fromkeys(c.algorithm for c in load_suite(suite).cells))
    root = Path(scratch or tempfile.mkdtemp(prefix="hetbench-portability-"))
    rows = []
    for algorithm in names:
        native = [run_cell(_cell(suite, algorithm, alpha, seed, list(overrides)), root / "native", None)
                  for seed in (0, *seeds)]
        row = {"algorithm": algorithm, "native": native[0],
               "seed_std": statistics.stdev(native) if len(native) > 1 else float("nan")}
        for capability in capabilities:
            row[capability] = run_cell(_cell(suite, algorithm, alpha, 0, list(overrides)), root / capability,
                                       capability)
        rows.append(row)
    return rows


def format_rows(rows: list[dict], capabilities: tuple[str, ...], native: str) -> list[str]:
    head = f"{'algorithm':>10} {native + ' (own)':>12} " + " ".join(f"{c:>10} {'diff':>6}" for c in capabilities)
    lines = [head + f" {'seed std':>8}"]
    for row in rows:
        cells = " ".join(f"{100 * row[c]:>10.2f} {100 * (row[c] - row['native']):>+6.2f}" for c in capabilities)
        lines.append(f"{row['algorithm']:>10} {100 * row['native']:>12.2f} {cells} {100 * row['seed_std']:>8.2f}")
    return lines
