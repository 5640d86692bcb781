"""Which runs a table may put side by side: never two configurations in one cell or one column.

A table's axes are the algorithm (rows), the dataset and heterogeneity level (columns) and the seed
(what a cell averages over). Every other setting must agree, or a mean mixes experiments (a 1-round
ConvNet-128 FedAvg beside a 3-round ConvNet-32 FedProx) and a bold face ranks them. So the runs are
split, setting by setting, and each split is named by the settings that make it:

- **variants** (A, B, ...): runs that differ in a shared setting (rounds, model, clients, partition
  size, ...) go to different tables; A is the variant with the most runs, and gets the full report;
- **rows**: runs of one algorithm whose own hyperparameters differ within a dataset become separate
  rows, labelled with the differing values ("FedProx (mu=0.1)"); hyperparameters a suite sets per
  dataset (DynaFed's ipc on CIFAR-100) differ only between columns and split nothing;
- **columns**: dataset settings that differ within a dataset (a ``train_subset``) split a column
  likewise, while settings a suite sets per dataset do not.

A stray ``--set rounds=2`` run thus becomes its own variant and leaves the legitimate cell intact,
instead of making it ambiguous. Two runs that agree on all of the above and on their seeds are one
experiment twice (a copied folder, or a rerun with other execution settings): the first by name is
kept, the others are excluded as duplicates, so that no seed counts twice.
"""
from __future__ import annotations

import pandas as pd

from reports.frames import CONFIG_PREFIX, config_columns

# The table's axes and the seeds: never a reason to split. The partition's knobs (alpha for the
# Dirichlet schemes, classes per client for shards) are the level axis; the other scheme's knob is a
# default the run never used.
AXIS_SETTINGS = tuple(CONFIG_PREFIX + key for key in (
    "algorithm", "seed", "partition.seed", "partition.scheme", "partition.alpha", "partition.classes_per_client",
    "dataset.name"))
ALGORITHM_PREFIX = CONFIG_PREFIX + "algorithms."
DATASET_PREFIX = CONFIG_PREFIX + "dataset."
MISSING = "–"


def assign(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``variant``, ``row_label`` and ``column_label`` filled for the runs a table may show
    (included and diverged ones), and duplicates excluded with the run they duplicate.

    Labels are assigned again once duplicates are out, so that they do not depend on them: the same
    labels come back when the report is rebuilt from its runs.csv, where the duplicates are excluded.
    """
    return _assign(_assign(runs))


def _assign(runs: pd.DataFrame) -> pd.DataFrame:
    runs = runs.copy()
    runs[["variant", "row_label", "column_label"]] = ""
    compared = runs.index[(runs["excluded"] == "") | (runs["status"] == "diverged")]
    if compared.empty:
        return runs
    pool = runs.loc[compared]
    configs = config_columns(pool)
    shared = [c for c in configs if c not in AXIS_SETTINGS and not c.startswith((ALGORITHM_PREFIX, DATASET_PREFIX))]
    keys = _join(pool, shared)
    counts = keys.value_counts()
    order = sorted(counts.index, key=lambda k: (-counts[k], k))
    names = {key: variant_name(i) for i, key in enumerate(order)}
    runs.loc[compared, "variant"] = keys.map(names)
    pool = runs.loc[compared]
    for (_, algorithm), group in pool.groupby(["variant", "algorithm"], sort=True):
        own = [c for c in configs if c.startswith(f"{ALGORITHM_PREFIX}{algorithm}.")]
        runs.loc[group.index, "row_label"] = _labels(group, own, f"{ALGORITHM_PREFIX}{algorithm}.")
    for _, group in pool.groupby("variant", sort=True):
        data = [c for c in configs if c.startswith(DATASET_PREFIX) and c not in AXIS_SETTINGS]
        runs.loc[group.index, "column_label"] = _labels(group, data, DATASET_PREFIX)
    return _exclude_duplicates(runs, runs.index[runs["variant"] != ""])


def variant_name(index: int) -> str:
    """A, B, ..., Z, then V27, V28, ... (sorted by length, then text, these keep the report's order)."""
    return chr(ord("A") + index) if index < 26 else f"V{index + 1}"


def differences(runs: pd.DataFrame, variant: str, reference: str) -> list[str]:
    """The shared settings in which ``variant`` differs from ``reference``, as ``key=value (A: value)``."""
    configs = [c for c in config_columns(runs) if c not in AXIS_SETTINGS
               and not c.startswith((ALGORITHM_PREFIX, DATASET_PREFIX))]
    mine = runs[runs["variant"] == variant].iloc[0]
    theirs = runs[runs["variant"] == reference].iloc[0]
    return [f"{c[len(CONFIG_PREFIX):]}={mine[c] or MISSING} ({reference}: {theirs[c] or MISSING})"
            for c in configs if mine[c] != theirs[c]]


def _labels(group: pd.DataFrame, columns: list[str], prefix: str) -> pd.Series:
    """The values of the settings among ``columns`` that differ between runs of one dataset in ``group``,
    as ``key=value, ...`` per run; empty when no dataset has two values of any of them."""
    differing = sorted({c for _, runs in group.groupby("dataset") for c in columns if runs[c].nunique() > 1})
    if not differing:
        return pd.Series("", index=group.index)
    return group[differing].apply(
        lambda run: ", ".join(f"{c[len(prefix):]}={run[c] or MISSING}" for c in differing), axis=1)


def _exclude_duplicates(runs: pd.DataFrame, shown: pd.Index) -> pd.DataFrame:
    cell = ["variant", "algorithm", "row_label", "dataset", "scheme", "level", "column_label", "seed",
            "partition_seed"]
    pool = runs.loc[shown].assign(_failed=lambda f: f["excluded"] != "")
    for _, group in pool.groupby(cell, sort=False, dropna=False):
        if len(group) < 2:
            continue
        kept, *others = group.sort_values(["_failed", "run"]).index
        for index in others:
            runs.loc[index, ["excluded", "variant", "status"]] = [
                f"duplicate of {runs.loc[kept, 'run']} (same settings and seed): counted once",
                "", runs.loc[index, "status"] if runs.loc[index, "status"] != "diverged" else "duplicate"]
    return runs


def _join(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    if not columns:
        return pd.Series("", index=frame.index)
    return frame[columns].apply(lambda run: "\x1f".join(f"{c}={run[c]}" for c in columns), axis=1)
