"""The portability measurement (issue I) on the smoke suite: each cell runs in its own process under the
requested kernel set, and the table shows both kernel sets and the seeds' spread."""
from __future__ import annotations

import json

from benchmarks.perf.portability import format_rows, measure


def test_a_cell_under_two_kernel_sets_and_two_seeds(tmp_path):
    rows = measure("smoke", alpha=1.0, capabilities=("default",), seeds=(1,), algorithms=("fedavg",),
                   overrides=("rounds=1",), scratch=tmp_path)
    row, = rows
    assert 0.0 <= row["native"] <= 1.0 and 0.0 <= row["default"] <= 1.0 and row["seed_std"] >= 0.0
    summaries = {p: json.loads(p.read_text()) for p in tmp_path.rglob("summary.json")}
    assert sorted(p.parent.parent.parent.name for p in summaries) == ["default", "native", "native"]
    for path, summary in summaries.items():
        restricted = path.parent.parent.parent.name == "default"
        assert (summary["versions"]["aten_cpu_capability_env"] == "default") == restricted
        assert (summary["versions"]["cpu_capability"] == "DEFAULT") == restricted
    lines = format_rows(rows, ("default",), "AVX2")
    assert lines[0].split()[:3] == ["algorithm", "AVX2", "(own)"] and lines[1].split()[0] == "fedavg"
