"""The report's data as tidy CSV files beside it, and the report rebuilt from them alone.

- ``runs.csv``: one row per run folder (suite, run, configuration, algorithm, dataset, alpha, seed,
  final and best-validation accuracy, mechanism verdict, seconds, revision, date, ..., why it was
  excluded if it was, and every config setting as ``config.<key>``);
- ``curves.csv``: run, round, split, metric, value: every included run's rounds.csv and timings.csv
  rows (timings have split ``time``);
- ``partitions.csv``: run, client, class, count (non-zero): the partitions the report draws.

``python -m reports SUITE --from-csv DIR`` rebuilds the page from these (plus DynaFed's image grids
and the tuner's files, when DIR is a report folder that has them), so a committed report can be
rebuilt, byte for byte, without the results folder it was made from.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from benchmarks.store.schema import DEVIATIONS_FILE, write_deviations
from reports.errors import ReportError
from reports.frames import (CURVE_COLUMNS, DERIVED, PARTITION_COLUMNS, RUN_COLUMNS, Suite, normalise_curves,
                            normalise_partitions, normalise_runs)
from reports.load import suite_deviations
from reports.tuning import tuned_overrides

RUNS_CSV, CURVES_CSV, PARTITIONS_CSV = "runs.csv", "curves.csv", "partitions.csv"
# The figures folder belongs to the report: a rebuild deletes the files in it that it did not write.
FIGURES_DIR = "figures"
SYNTHETIC_DIR = f"{FIGURES_DIR}/synthetic"


def synthetic_name(run: str) -> str:
    """Where a run's synthetic image grid lies in a report folder (keyed by run, so a rebuild finds it)."""
    return f"{SYNTHETIC_DIR}/{run}.png"


def write_csvs(suite: Suite, out: Path, drawn_partitions: list[str]) -> list[Path]:
    """The three files; ``drawn_partitions``: the runs whose partition the report draws."""
    parts = suite.partitions[suite.partitions["run"].isin(drawn_partitions)]
    files = [(out / RUNS_CSV, suite.runs), (out / CURVES_CSV, suite.curves), (out / PARTITIONS_CSV, parts)]
    for path, frame in files:
        frame.to_csv(path, index=False, lineterminator="\n")
    written = [path for path, _ in files]
    if suite.deviations is not None:
        write_deviations(out / DEVIATIONS_FILE, suite.deviations)
        written.append(out / DEVIATIONS_FILE)
    return written


def load_csvs(suite: str, directory: Path, option: str = "--from-csv") -> Suite:
    """A Suite from a folder holding runs.csv and curves.csv (partitions.csv optional); ReportError with
    one line naming the file (or ``option``, the folder's) and the problem when they are missing or
    malformed."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ReportError(f"reports: {option} {directory} is not a folder")
    for name in (RUNS_CSV, CURVES_CSV):
        if not (directory / name).is_file():
            raise ReportError(f"reports: {option} {directory} has no {name} (a report folder written by "
                              f"`python -m reports SUITE` has one)")
    runs = _read(directory / RUNS_CSV, RUN_COLUMNS, normalise_runs, optional=DERIVED)
    suites = sorted(set(runs["suite"]) - {""})
    if suites and suites != [suite]:
        raise ReportError(f"reports: {directory / RUNS_CSV} holds suite {', '.join(suites)}, not {suite}")
    curves = _read(directory / CURVES_CSV, CURVE_COLUMNS, normalise_curves)
    partitions = (_read(directory / PARTITIONS_CSV, PARTITION_COLUMNS, normalise_partitions)
                  if (directory / PARTITIONS_CSV).is_file() else normalise_partitions(
                      pd.DataFrame({c: [] for c in PARTITION_COLUMNS})))
    unknown = sorted(set(curves["run"]) - set(runs.loc[runs["excluded"] == "", "run"]))
    if unknown:
        raise ReportError(f"reports: {directory / CURVES_CSV} has curves of run {unknown[0]}, which {RUNS_CSV} "
                          "does not list as included")
    images = {run: directory / synthetic_name(run) for run in runs["run"]
              if (directory / synthetic_name(run)).is_file()}
    return Suite(suite, runs, curves, partitions, images, tuned_overrides(directory),
                 suite_deviations(directory / DEVIATIONS_FILE))


def _read(path: Path, columns: dict, normalise, optional=()) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        raise ReportError(f"reports: {path} is not a readable CSV ({_first_line(exc)})") from None
    missing = [c for c in columns if c not in frame.columns and c not in optional]
    if missing:
        raise ReportError(f"reports: {path} lacks column(s) {', '.join(missing)}")
    try:
        return normalise(frame.drop(columns=[c for c in optional if c in frame.columns]))
    except ValueError as exc:
        raise ReportError(f"reports: {path}: {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
