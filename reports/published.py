"""A suite's runs from its result folders joined with the runs an earlier report of it published.

Result folders are not committed and do not outlive the machine that wrote them; a report's CSVs are
(``reports.tidy``). When a grid takes longer than one machine lasts, the next machine runs only the cells
that report lacks (``hetbench sweep SUITE --published DIR``) and builds the report from both. A run id
names a config hash, so a published row and a new folder of the same id are the same experiment: a usable
folder (complete or diverged) wins, and a published row wins over a folder the report must exclude
(damaged, older format). The earlier report's other excluded rows (unfinished, duplicates) are not
carried: they say nothing about a run that is now whole or gone. The tuner's files the earlier report
copied are carried too (the results' own win).
"""
from __future__ import annotations

import pandas as pd

from reports.frames import CONFIG_PREFIX, Suite, normalise_curves, normalise_partitions, normalise_runs


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs that ended: included in the tables, or diverged (shown as such)."""
    return runs[(runs["excluded"] == "") | (runs["status"] == "diverged")]


def with_published(results: Suite, published: Suite) -> tuple[Suite, list[str]]:
    """(``results`` plus every finished run of ``published`` that has no usable folder among the results,
    the names of the runs carried over). Rows come back in run order, as if every run had a folder."""
    usable = set(finished(results.runs)["run"])
    carried = sorted(set(finished(published.runs)["run"]) - usable)
    own = results.runs[~results.runs["run"].isin(carried)]
    taken = published.runs[published.runs["run"].isin(carried)]
    # A setting column only the earlier report's other runs had would be empty here, and absent from a
    # report built from the folders.
    unused = [c for c in taken.columns if c.startswith(CONFIG_PREFIX) and c not in own.columns
              and (taken[c] == "").all()]
    runs = normalise_runs(pd.concat([own, taken.drop(columns=unused)], ignore_index=True))
    curves = _in_run_order([results.curves, published.curves[published.curves["run"].isin(carried)]])
    partitions = _in_run_order([results.partitions,
                                published.partitions[published.partitions["run"].isin(carried)]])
    images = {**{run: path for run, path in published.images.items() if run in carried}, **results.images}
    tuned = {**dict(published.tuned), **dict(results.tuned)}
    joined = Suite(results.name, runs, normalise_curves(curves), normalise_partitions(partitions),
                   dict(sorted(images.items())), sorted(tuned.items()),
                   published.deviations if results.deviations is None else results.deviations)
    return joined, carried


def _in_run_order(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows grouped by run name; within a run, in the order its source gave them."""
    joined = pd.concat(frames, ignore_index=True)
    return joined.sort_values("run", kind="stable").reset_index(drop=True)
