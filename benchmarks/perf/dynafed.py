"""Cost of DynaFed's synthesis (a benchmark, not a test): seconds per outer matching iteration and peak
memory, for the ConvNet widths and synthetic-set sizes of the paper's CIFAR settings.

Synthesis cost does not depend on the trajectory's values, so the trajectory is random snapshots
around a fresh model. Wall seconds suffer when other processes share the cores, so process CPU
seconds (summed over threads) are printed beside them. Peak memory is the CUDA allocator's peak on a
GPU; on a CPU it is the process's peak resident set (VmHWM, reset before each case where Linux allows,
else the lifetime peak from getrusage), reported as the rise over the resident set at the case's start.

Time and memory grow linearly with ``syn_steps`` and with the synthetic-set size, so the paper's
width-128 CIFAR-100 case (1500 images, 20 steps) is for a large GPU; on a CPU measure fewer steps
(``--syn-steps``) and scale. On a CPU, glibc's allocator hands tensors above 32 MiB back to the kernel
and faults them in again every step; preloading tcmalloc roughly halves CPU time at width 128.

``python -m benchmarks.perf.dynafed --widths 32 --settings 10x15 --iterations 2``

What was tried to make an iteration cheaper (issue B.3; ConvNet-32, 100 CIFAR-shaped images, 10 unrolled
steps, one thread, tcmalloc, this 2-core AMD EPYC host while a sweep loaded both cores, old and new
alternated in one process): 3.9-4.4 CPU s per iteration before.
- AvgPool2's hand-written gradient (``benchmarks.models._Pool2x2``): 1.10x (4.10 -> 3.74 s) and 1.17x
  (4.05 -> 3.47 s) in two runs;
  ``hetbench perf --dynafed --compare-pooling`` repeats the measurement;
- torch.compile of the inner step (``torch.func.grad`` inside the compiled function): 226 s to compile,
  then 4.30 s against eager's 3.94 s, so slower;
- channels_last synthetic images: 4.07 s against 3.88 s, slower; oneDNN off: 5.2 s against 3.9 s.
The rest is convolution and its double backward (41% of the time) and GroupNorm's double backward
(14%), which only fewer or smaller convolutions would cut; the 2x asked for was not reached on a CPU.
Removing the norms altogether (``hetbench perf --dynafed --norm-bound``, a bound, not a model) took an
iteration from 3.65 to 2.59 CPU s (1.41x) and, in a second run, from 3.86 to 2.71 (1.42x), so no
hand-written norm gradient alone could give 2x.
"""
from __future__ import annotations

import argparse
import resource
import sys
import time

import torch

from algorithms.dynafed import DynaFedParams
from algorithms.trajectory_matching import SyntheticSet, TrajectoryMatcher
from benchmarks.engine.flat import bind_flat
from benchmarks.models import AvgPool2, ConvNet

SHAPE = (3, 32, 32)


def _reset_peak_rss() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current resident set
    except OSError:
        pass


def _rss_mb(field: str) -> float:
    """VmRSS or VmHWM in MiB; without /proc, the lifetime peak from getrusage."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


def measure(width: int, num_classes: int, ipc: int, iterations: int, syn_steps: int,
            device: torch.device, snapshots: int = 25, shape: tuple[int, int, int] = SHAPE) -> dict:
    """Time ``iterations`` outer iterations after one warm-up; peak memory covers both."""
    hp = DynaFedParams(ipc=ipc, syn_steps=syn_steps, trajectory_length=snapshots)
    gen = torch.Generator(device=device).manual_seed(0)
    model = ConvNet(shape, num_classes, width=width, depth=3).to(device)
    flat = bind_flat(model)
    noise = torch.randn((snapshots, len(flat)), generator=gen, device=device)
    trajectory = flat.detach() + 0.01 * noise.cumsum(0)
    syn = SyntheticSet.initial(num_classes, ipc, shape, hp.syn_lr_init, hp.label_init, gen, device)
    matcher = TrajectoryMatcher(model, trajectory, syn, hp, gen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    _reset_peak_rss()
    rss_start = _rss_mb("VmRSS")
    matcher.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        matcher.step()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device) / 2 ** 20
    else:
        peak = _rss_mb("VmHWM") - rss_start
    return {"width": width, "classes": num_classes, "images": num_classes * ipc, "syn_steps": syn_steps,
            "seconds_per_iteration": (time.perf_counter() - start) / iterations,
            "cpu_seconds_per_iteration": (time.process_time() - cpu_start) / iterations, "peak_mb": peak,
            "parameters": len(flat)}


def _replace_modules(model: torch.nn.Module, kind: type, make) -> torch.nn.Module:
    """``model`` with every submodule of type ``kind`` replaced by ``make()``."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, kind):
                setattr(module, child_name, make())
    return model


class _SlicePool(torch.nn.Module):
    """AvgPool2's plain autograd form before its hand-written gradient (same forward values)."""

    def forward(self, x):
        h, w = x.shape[-2], x.shape[-1]
        x = x[..., :h - h % 2, :w - w % 2]
        return (x[..., 0::2, 0::2] + x[..., 1::2, 0::2] + x[..., 0::2, 1::2] + x[..., 1::2, 1::2]) * 0.25


def _slice_pooling(model: torch.nn.Module) -> torch.nn.Module:
    return _replace_modules(model, AvgPool2, _SlicePool)


def _without_norm(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every GroupNorm replaced by the identity: not a model anyone should train, only the
    floor under what any faster normalisation could reach."""
    return _replace_modules(model, torch.nn.GroupNorm, torch.nn.Identity)


def alternate(variants: dict, width: int, num_classes: int, ipc: int, iterations: int, syn_steps: int,
              snapshots: int = 8) -> dict[str, float]:
    """CPU seconds per outer iteration for each ``variants`` entry (name -> function that edits a fresh
    ConvNet), alternated iteration by iteration so host drift hits all alike."""
    device = torch.device("cpu")
    hp = DynaFedParams(ipc=ipc, syn_steps=syn_steps, trajectory_length=snapshots)
    matchers = {}
    for variant, edit in variants.items():
        gen = torch.Generator().manual_seed(0)
        model = edit(ConvNet(SHAPE, num_classes, width=width, depth=3))
        flat = bind_flat(model)
        trajectory = flat.detach() + 0.01 * torch.randn((snapshots, len(flat)), generator=gen).cumsum(0)
        syn = SyntheticSet.initial(num_classes, ipc, SHAPE, hp.syn_lr_init, hp.label_init, gen, device)
        matchers[variant] = TrajectoryMatcher(model, trajectory, syn, hp, gen)
        matchers[variant].step()  # warm-up
    seconds = {variant: 0.0 for variant in matchers}
    for _ in range(iterations):
        for variant, matcher in matchers.items():
            start = time.process_time()
            matcher.step()
            seconds[variant] += time.process_time() - start
    print(f"DynaFed synthesis, ConvNet-{width}, {num_classes * ipc} images, {syn_steps} unrolled steps, "
          f"{torch.get_num_threads()} thread(s): CPU s per iteration, mean of {iterations}")
    return {variant: total / iterations for variant, total in seconds.items()}


def compare_pooling(width: int = 32, num_classes: int = 10, ipc: int = 10, iterations: int = 3,
                    syn_steps: int = 10, snapshots: int = 8) -> dict:
    """CPU seconds per iteration with AvgPool2's autograd-through-slices gradient and with its
    hand-written one."""
    per_iteration = alternate({"slices": _slice_pooling, "hand-written": lambda model: model}, width,
                              num_classes, ipc, iterations, syn_steps, snapshots)
    for variant, value in per_iteration.items():
        print(f"  AvgPool2 gradient {variant:>12}: {value:.3f}")
    print(f"  speed-up: {per_iteration['slices'] / per_iteration['hand-written']:.2f}x")
    return per_iteration


def norm_bound(width: int = 32, num_classes: int = 10, ipc: int = 10, iterations: int = 3,
               syn_steps: int = 10, snapshots: int = 8) -> dict:
    """The most any faster instance norm could give: the shipped ConvNet against the same net with its
    norms removed (a different model, timed only as a bound)."""
    per_iteration = alternate({"with norm": lambda model: model, "norm removed": _without_norm}, width,
                              num_classes, ipc, iterations, syn_steps, snapshots)
    for variant, value in per_iteration.items():
        print(f"  {variant:>12}: {value:.3f}")
    print(f"  bound on a faster norm's speed-up: {per_iteration['with norm'] / per_iteration['norm removed']:.2f}x")
    return per_iteration


def main(widths=(32, 128), settings=((10, 15), (100, 15)), iterations: int = 2, syn_steps: int = 20,
         device: str | None = None, threads: int | None = None) -> list[dict]:
    """Measure every (width, (classes, ipc)) case and print one line each; returns the rows."""
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if threads:
        torch.set_num_threads(threads)
    memory = "CUDA peak allocated" if dev.type == "cuda" else "peak RSS rise"
    print(f"DynaFed synthesis on {dev} ({torch.get_num_threads()} threads), 3x32x32 inputs, ConvNet depth 3, "
          f"{iterations} timed outer iteration(s) after 1 warm-up")
    print(f"{'width':>5} {'classes':>7} {'images':>6} {'steps':>5} {'params':>8} {'s/iter':>8} "
          f"{'cpu s/iter':>10} {memory + ' MiB':>24}")
    rows = []
    for width in widths:
        for num_classes, ipc in settings:
            row = measure(width, num_classes, ipc, iterations, syn_steps, dev)
            rows.append(row)
            print(f"{width:>5} {num_classes:>7} {row['images']:>6} {syn_steps:>5} {row['parameters']:>8} "
                  f"{row['seconds_per_iteration']:>8.3f} {row['cpu_seconds_per_iteration']:>10.3f} "
                  f"{row['peak_mb']:>24.0f}", flush=True)
    return rows


def _settings(text: str) -> tuple[tuple[int, int], ...]:
    """'10x15,100x15' -> ((10, 15), (100, 15)): classes x images per class."""
    return tuple(tuple(int(v) for v in item.split("x")) for item in text.split(","))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="32,128", help="ConvNet widths, comma-separated")
    parser.add_argument("--settings", default="10x15,100x15", help="classes x images-per-class, comma-separated")
    parser.add_argument("--iterations", type=int, default=2, help="timed outer iterations per case")
    parser.add_argument("--syn-steps", type=int, default=20, help="unrolled inner steps")
    parser.add_argument("--device", help="cpu, cuda, cuda:N (default: cuda if available)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    args = parser.parse_args()
    main(tuple(int(w) for w in args.widths.split(",")), _settings(args.settings), args.iterations,
         args.syn_steps, args.device, args.threads)
