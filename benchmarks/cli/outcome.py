"""The one line a finished (or already finished) run ends with."""
from __future__ import annotations

from pathlib import Path

from benchmarks.core.dotted import get_dotted
from benchmarks.experiments.estimate import format_duration
from benchmarks.store.schema import read_summary


def outcome_line(run_dir: Path, wall_seconds: float | None = None) -> str:
    """Final test accuracy, best validation accuracy, wall time and the folder, from the run's summary.json.
    Without ``wall_seconds`` (a run finished earlier) the time is its rounds' total as recorded."""
    summary = read_summary(run_dir)
    best = summary.get("best_val") or {}
    parts = [f"final test accuracy {_percent(get_dotted(summary, 'final.test_accuracy', None))}",
             f"best validation accuracy {_percent(best.get('val_accuracy'))}"
             + (f" (round {best['round']})" if "round" in best else "")]
    if wall_seconds is None:
        parts.append(f"wall time {_duration(get_dotted(summary, 'timing.total_seconds', 0.0))} when it ran")
    else:
        parts.append(f"wall time {_duration(wall_seconds)}")
    head = f"run {run_dir.name}"
    if wall_seconds is None:
        head += " is already complete, not run again"
    if summary.get("status") == "diverged":
        head += f" (diverged at round {get_dotted(summary, 'diverged.round', '?')})"
    return f"{head}: {', '.join(parts)}; results: {run_dir}"


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 30 else format_duration(seconds)


def _percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
