"""Which training-step options pay off for the ConvNet on this CPU (a benchmark, not a test).

One step is forward + cross-entropy + backward + Adam on a fixed batch, timed as eager fp32 (the
reference), channels_last memory format, bf16 autocast and torch.compile. The batch is random tensors of
the dataset's shape (``DATASET_FACTS``): step cost does not depend on the pixel values, so no data is
loaded. Every variant starts from the same seed, so bf16's first-step loss can be compared with fp32's
to judge whether accuracy holds. torch.compile's first call (compilation plus one step, with the
compiler's on-disk caches off so it is really cold) is reported apart from its steady step time, with
the number of steps after which compiling has paid for itself. A variant that fails (torch.compile
without a C compiler, say) is reported with its reason rather than ending the sweep.
"""
from __future__ import annotations

import contextlib
import time

import torch
import torch.nn.functional as F

from benchmarks.data.datasets import DATASET_FACTS
from benchmarks.models import build_model

VARIANTS = ("eager", "channels_last", "bf16", "compile")
BATCH_SIZE = 32


def _step(model, optimizer, x, y, use_bf16: bool) -> float:
    with torch.autocast("cpu", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext():
        loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def measure_variant(variant: str, dataset: str, width: int, repeats: int, warmup: int = 3,
                    seed: int = 0) -> dict:
    """Seconds per step over ``repeats`` steps after the first call and ``warmup`` more steps."""
    facts = DATASET_FACTS[dataset]
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((BATCH_SIZE, *facts.input_shape), generator=gen)
    y = torch.randint(facts.num_classes, (BATCH_SIZE,), generator=gen)
    torch.manual_seed(seed)  # same initial weights in every variant, so first-step losses are comparable
    model = build_model("convnet", facts.input_shape, facts.num_classes, width, 3)
    if variant == "channels_last":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    cold = contextlib.nullcontext()
    if variant == "compile":
        torch.compiler.reset()  # forget graphs compiled for an earlier width, or the first call is not cold
        cold = torch.compiler.config.patch(force_disable_caches=True)
        model = torch.compile(model)
    use_bf16 = variant == "bf16"
    start = time.perf_counter()
    with cold:
        first_loss = _step(model, optimizer, x, y, use_bf16)
    first_call_seconds = time.perf_counter() - start
    for _ in range(warmup):
        _step(model, optimizer, x, y, use_bf16)
    start = time.perf_counter()
    for _ in range(repeats):
        _step(model, optimizer, x, y, use_bf16)
    seconds = (time.perf_counter() - start) / repeats
    return {"variant": variant, "width": width, "threads": torch.get_num_threads(), "seconds_per_step": seconds,
            "samples_per_second": BATCH_SIZE / seconds, "first_call_seconds": first_call_seconds,
            "first_loss": first_loss, "error": None}


def measure_steps(dataset: str, width: int, threads: int = 1, repeats: int = 20,
                  variants=VARIANTS, warmup: int = 3) -> list[dict]:
    """One record per variant, eager first since every speed-up is relative to it."""
    torch.set_num_threads(threads)
    eager = measure_variant("eager", dataset, width, repeats, warmup)
    eager.update(speedup=1.0)
    records = [eager]
    for variant in (v for v in variants if v != "eager"):
        try:
            record = measure_variant(variant, dataset, width, repeats, warmup)
        except Exception as exc:  # noqa: BLE001 - any failure of an optional variant is a result to report
            reason = (str(exc).strip().splitlines() or [""])[0][:120]
            records.append({"variant": variant, "width": width, "threads": threads,
                            "error": f"{type(exc).__name__}: {reason}"})
            continue
        record["speedup"] = eager["seconds_per_step"] / record["seconds_per_step"]
        if variant == "bf16":
            record["loss_difference"] = abs(record["first_loss"] - eager["first_loss"])
        if variant == "compile":
            saved_per_step = eager["seconds_per_step"] - record["seconds_per_step"]
            record["break_even_steps"] = (record["first_call_seconds"] / saved_per_step
                                          if saved_per_step > 0 else None)
        records.append(record)
    return records


def _notes(record: dict) -> str:
    if record["error"]:
        return f"FAILED {record['error']}"
    if "loss_difference" in record:
        return f"first-step |loss - fp32 loss| = {record['loss_difference']:.2e}"
    if "break_even_steps" in record:
        steps = record["break_even_steps"]
        pays_off = "never" if steps is None else f"{steps:.0f} steps"
        return f"first call (compile + 1 step) {record['first_call_seconds']:.1f} s; pays off after {pays_off}"
    return ""


def format_table(records: list[dict]) -> list[str]:
    """A header line, then one line per record."""
    lines = [f"{'width':>5} {'threads':>7} {'variant':<13} {'s/step':>9} {'samples/s':>9} {'speed-up':>8}  notes"]
    for r in records:
        if r["error"]:
            lines.append(f"{r['width']:>5} {r['threads']:>7} {r['variant']:<13} {'-':>9} {'-':>9} {'-':>8}  "
                         f"{_notes(r)}")
        else:
            lines.append(f"{r['width']:>5} {r['threads']:>7} {r['variant']:<13} {r['seconds_per_step']:>9.4f} "
                         f"{r['samples_per_second']:>9.0f} {r['speedup']:>7.2f}x  {_notes(r)}")
    return lines
