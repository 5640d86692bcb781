"""The step-options micro-benchmark: every variant measured, a failing compiler reported, one row each.

Width 4 on the synthetic dataset's 1x16x16 shape keeps each step to milliseconds; torch.compile is left
out except where it is made to fail, since a real compilation takes tens of seconds on a CPU."""
from __future__ import annotations

import torch

from benchmarks.perf.steps import format_table, measure_steps

FAST = ("eager", "channels_last", "bf16")


def test_every_chosen_variant_has_positive_times():
    records = measure_steps("synthetic", width=4, repeats=2, variants=FAST, warmup=1)
    assert [r["variant"] for r in records] == list(FAST)
    for record in records:
        assert record["error"] is None
        assert record["seconds_per_step"] > 0 and record["samples_per_second"] > 0 and record["speedup"] > 0
    bf16 = records[-1]
    # same seed, same batch: bf16's first loss may differ from fp32's only by rounding
    assert 0 <= bf16["loss_difference"] < 0.1


def test_a_failing_compile_is_reported_not_raised(monkeypatch):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("no C compiler found\nsecond line is dropped")

    monkeypatch.setattr(torch, "compile", no_compiler)
    records = measure_steps("synthetic", width=4, repeats=1, variants=("eager", "compile"), warmup=0)
    failed = records[-1]
    assert failed["variant"] == "compile"
    assert failed["error"] == "RuntimeError: no C compiler found"
    row = format_table(records)[-1]
    assert "compile" in row and "FAILED RuntimeError: no C compiler found" in row


def test_table_has_a_header_and_one_line_per_variant():
    records = measure_steps("synthetic", width=4, repeats=1, variants=FAST, warmup=0)
    header, *rows = format_table(records)
    assert "s/step" in header and "speed-up" in header and "notes" in header
    assert len(rows) == len(FAST)
    assert [row.split()[2] for row in rows] == list(FAST)
    assert "loss" in rows[-1]


def test_dynafed_norm_bound_removes_only_the_norms_and_times_both_variants():
    import torch

    from benchmarks.models import ConvNet
    from benchmarks.perf.dynafed import _without_norm, alternate

    assert any(isinstance(m, torch.nn.GroupNorm) for m in ConvNet((3, 32, 32), 10, width=4, depth=3).modules())
    model = _without_norm(ConvNet((3, 32, 32), 10, width=4, depth=3))
    assert not any(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == 3
    seconds = alternate({"with norm": lambda m: m, "norm removed": _without_norm}, width=4, num_classes=2, ipc=1,
                        iterations=1, syn_steps=1, snapshots=5)
    assert set(seconds) == {"with norm", "norm removed"} and all(v > 0 for v in seconds.values())
