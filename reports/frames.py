"""The report's data as pandas frames with fixed columns and dtypes, whichever source they came from.

- ``runs``: one row per run folder, excluded ones included (their ``excluded`` column says why);
  the run's identity, results, mechanism verdict, provenance and every config setting as text
  (``config.<dotted key>``), so that runs can be compared setting by setting;
- ``curves``: the rows of every included run's rounds.csv and timings.csv (long: run, round, split,
  metric, value; timings have split ``time``);
- ``partitions``: per-client class counts (run, client, class, count; non-zero counts only).

Result folders (``reports.load``) and the CSVs a report writes beside itself (``reports.tidy``) both
go through :func:`normalise_runs` and friends, so a report rebuilt from its CSVs is byte-identical to
the one built from the result folders.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.names import ALPHA_SCHEMES, Setting

TEXT, FLOAT, INT = "text", "float", "int"
# The tidy columns first (what a reader of runs.csv wants), then the rest; config.* columns follow.
RUN_COLUMNS = {
    "suite": TEXT, "run": TEXT, "variant": TEXT, "algorithm": TEXT, "row_label": TEXT, "dataset": TEXT,
    "column_label": TEXT, "scheme": TEXT, "alpha": FLOAT, "level": FLOAT, "seed": INT, "partition_seed": INT,
    "final_round": INT, "final_test_accuracy": FLOAT, "best_val_round": INT, "best_val_test_accuracy": FLOAT,
    "final_val_accuracy": FLOAT, "final_test_loss": FLOAT, "mechanism_engaged": TEXT, "total_seconds": FLOAT,
    "revision": TEXT,
    "finished": TEXT, "excluded": TEXT, "status": TEXT, "diverged_round": INT, "algorithm_title": TEXT,
    "dataset_title": TEXT, "hyperparameters": TEXT, "mechanism_evidence": TEXT, "local_steps": FLOAT,
    "drift": FLOAT, "num_classes": INT, "clients": INT, "heterogeneity": FLOAT, "heterogeneity_metric": TEXT,
    "executor": TEXT, "executor_fallback": TEXT, "threads": INT, "torch": TEXT, "python": TEXT, "numpy": TEXT,
    "cpu": TEXT, "cpu_capability": TEXT, "gpu": TEXT, "paper_deviations": TEXT, "artifacts": TEXT,
}
# Columns computed from the others on every load (by reports.trust and normalise_runs), never trusted
# from a CSV: a hand-edited runs.csv cannot smuggle two configurations into one average.
DERIVED = ("variant", "row_label", "column_label", "alpha")
CONFIG_PREFIX = "config."
CURVE_COLUMNS = {"run": TEXT, "round": INT, "split": TEXT, "metric": TEXT, "value": FLOAT}
PARTITION_COLUMNS = {"run": TEXT, "client": INT, "class": INT, "count": INT}


@dataclass
class Suite:
    name: str
    runs: pd.DataFrame
    curves: pd.DataFrame
    partitions: pd.DataFrame
    # run -> DynaFed's synthetic image grid (a PNG file), for the runs that have one on disk
    images: dict[str, Path] = field(default_factory=dict)
    # (path relative to the results root, text) of the tuner's override files
    tuned: list[tuple[str, str]] = field(default_factory=list)
    # The suite folder's deviations.csv rows (algorithm, setting, ours, official, why); None without one
    deviations: list[dict[str, str]] | None = None

    @property
    def variants(self) -> list[str]:
        """Configurations in report order (A is the one with the most runs)."""
        return sorted({v for v in self.runs["variant"] if v}, key=lambda v: (len(v), v))

    @property
    def main(self) -> str | None:
        return self.variants[0] if self.variants else None

    def included(self, variant: str | None = None) -> pd.DataFrame:
        runs = self.runs[self.runs["excluded"] == ""]
        return runs if variant is None else runs[runs["variant"] == variant]

    def diverged(self, variant: str | None = None) -> pd.DataFrame:
        runs = self.runs[(self.runs["status"] == "diverged") & (self.runs["variant"] != "")]
        return runs if variant is None else runs[runs["variant"] == variant]

    def excluded(self) -> pd.DataFrame:
        return self.runs[self.runs["excluded"] != ""]


def setting_of(run) -> Setting:
    """The column of a runs-frame row (a namedtuple from itertuples or a Series)."""
    return Setting(run.dataset, run.scheme, float(run.level), run.column_label)


def settings_of(runs: pd.DataFrame) -> list[Setting]:
    return [setting_of(r) for r in runs.itertuples(index=False)]


def rows_of(runs: pd.DataFrame) -> list[tuple[str, str]]:
    return list(zip(runs["algorithm"], runs["row_label"]))


def config_columns(frame: pd.DataFrame) -> list[str]:
    return sorted(c for c in frame.columns if c.startswith(CONFIG_PREFIX))


def normalise_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """Fixed columns, order and dtypes; ValueError naming the column when a value does not fit."""
    frame = frame.copy()
    for column, kind in RUN_COLUMNS.items():
        if column not in frame.columns:
            frame[column] = "" if kind == TEXT else None
    frame = _typed(frame, {**RUN_COLUMNS, **{c: TEXT for c in config_columns(frame)}})
    alpha = frame["scheme"].isin(ALPHA_SCHEMES)
    frame["alpha"] = frame["level"].where(alpha)
    frame = frame[list(RUN_COLUMNS) + config_columns(frame)]
    return frame.sort_values("run", kind="stable").reset_index(drop=True)


def normalise_curves(frame: pd.DataFrame) -> pd.DataFrame:
    return _typed(frame, CURVE_COLUMNS)[list(CURVE_COLUMNS)].reset_index(drop=True)


def normalise_partitions(frame: pd.DataFrame) -> pd.DataFrame:
    return _typed(frame, PARTITION_COLUMNS)[list(PARTITION_COLUMNS)].reset_index(drop=True)


def empty(columns: dict) -> pd.DataFrame:
    return _typed(pd.DataFrame({c: [] for c in columns}), columns)


def _typed(frame: pd.DataFrame, kinds: dict[str, str]) -> pd.DataFrame:
    out = {}
    for column, kind in kinds.items():
        values = frame[column]
        if kind != TEXT and not pd.api.types.is_numeric_dtype(values):
            values = values.mask(values.astype(str).str.strip() == "")  # an empty CSV cell is a missing value
        try:
            if kind == TEXT:
                out[column] = values.fillna("").astype(str)
            elif kind == FLOAT:
                out[column] = pd.to_numeric(values, errors="raise").astype("float64")
            else:
                out[column] = pd.to_numeric(values, errors="raise").astype("Int64")
        except (ValueError, TypeError) as exc:
            raise ValueError(f"column {column!r}: {exc}") from None
    return frame.assign(**out)
