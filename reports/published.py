"""A suite's runs from its result folders joined with the runs an earlier report of it published.

Result folders are not committed and do not outlive the machine that wrote them; a report's CSVs are
(``reports.tidy``). When a grid takes longer than one machine lasts, the next machine runs only the cells
that report lacks (``hetbench sweep SUITE --published DIR``) and builds the report from both. A run id
names a config hash, so a published row and a new folder of the same id are the same experiment; the
folder, when there is one, wins. Rows the earlier report excluded (unfinished, damaged, duplicates) are
not carried: they say nothing about a run that is now whole or gone.
"""
from __future__ import annotations

import pandas as pd

from reports.frames import Suite, normalise_curves, normalise_partitions, normalise_runs


def with_published(results: Suite, published: Suite) -> tuple[Suite, list[str]]:
    """(``results`` plus every run ``published`` includes that has no folder among the results, the names of
    the runs carried over). Rows come back in run order, as if every run had a folder."""
    present = set(results.runs["run"])
    carried = sorted(set(published.included()["run"]) - present)
    taken = published.runs[published.runs["run"].isin(carried)]
    runs = normalise_runs(pd.concat([results.runs, taken], ignore_index=True))
    curves = _in_run_order([results.curves, published.curves[published.curves["run"].isin(carried)]])
    partitions = _in_run_order([results.partitions,
                                published.partitions[published.partitions["run"].isin(carried)]])
    images = {**{run: path for run, path in published.images.items() if run in carried}, **results.images}
    joined = Suite(results.name, runs, normalise_curves(curves), normalise_partitions(partitions),
                   dict(sorted(images.items())), results.tuned,
                   published.deviations if results.deviations is None else results.deviations)
    return joined, carried


def _in_run_order(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows grouped by run name; within a run, in the order its source gave them."""
    joined = pd.concat(frames, ignore_index=True)
    return joined.sort_values("run", kind="stable").reset_index(drop=True)
