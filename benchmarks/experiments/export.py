"""Export finished runs to TensorBoard (issue E2): one event-file folder per run, holding every
rounds.csv and timings.csv series as scalars (tag ``<split>/<metric>``, step = round) and the run's
settings with its final and best-validation accuracy in TensorBoard's hyperparameter (HParams) view.

Written with tensorboard's own event writer (no torch), from the results files only, so an export is
the same whichever machine ran the runs. ``hetbench export SUITE --tensorboard DIR``, then
``tensorboard --logdir DIR``.
"""
from __future__ import annotations

from pathlib import Path

from benchmarks.store.schema import ROUNDS_FILE, TIMINGS_FILE, SchemaError, is_complete, read_long_csv, read_summary


def _flat(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flat(f"{prefix}.{key}" if prefix else key, inner, out)
    elif isinstance(value, (bool, int, float, str)):
        out[prefix] = value
    elif value is None:
        out[prefix] = "none"
    else:
        out[prefix] = str(value)


def run_hparams(summary: dict) -> tuple[dict, dict]:
    """(settings flattened to dotted keys, final metrics) of one run's summary."""
    settings: dict = {}
    _flat("", summary.get("config", {}), settings)
    metrics = {"hparam/final_test_accuracy": summary.get("final", {}).get("test_accuracy", float("nan")),
               "hparam/best_val_accuracy": summary.get("best_val", {}).get("val_accuracy", float("nan"))}
    return settings, metrics


def export_run(run_dir: Path, out_dir: Path) -> int:
    """Write one run's event file under ``out_dir``; returns the number of scalar points written."""
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb
    from tensorboard.summary.writer.event_file_writer import EventFileWriter
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary

    summary = read_summary(run_dir)
    rows = read_long_csv(run_dir / ROUNDS_FILE)
    if (run_dir / TIMINGS_FILE).is_file():
        rows += read_long_csv(run_dir / TIMINGS_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = EventFileWriter(str(out_dir))
    wall = 0.0  # a fixed clock: an export of the same results writes the same events
    for row in rows:
        value = Summary(value=[Summary.Value(tag=f"{row.split}/{row.metric}", simple_value=row.value)])
        writer.add_event(Event(wall_time=wall, step=row.round, summary=value))
    settings, metrics = run_hparams(summary)
    writer.add_event(Event(wall_time=wall, summary=hparams_pb(settings, trial_id=run_dir.name, start_time_secs=0)))
    for tag, value in metrics.items():
        writer.add_event(Event(wall_time=wall, step=summary.get("final", {}).get("round", 0),
                               summary=Summary(value=[Summary.Value(tag=tag, simple_value=value)])))
    writer.close()
    return len(rows)


def export_suite(suite_dir: Path, out_dir: Path) -> tuple[list[str], list[str]]:
    """Export every finished run of ``suite_dir``; returns (exported run ids, skipped 'run: reason')."""
    if not suite_dir.is_dir():
        raise SchemaError(f"results: {suite_dir} does not exist")
    exported, skipped = [], []
    for run_dir in sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if not is_complete(run_dir):
            skipped.append(f"{run_dir.name}: unfinished")
            continue
        try:
            export_run(run_dir, out_dir / run_dir.name)
        except (SchemaError, OSError) as exc:
            skipped.append(f"{run_dir.name}: {exc}")
            continue
        exported.append(run_dir.name)
    return exported, skipped
