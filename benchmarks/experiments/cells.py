"""Which cells of a suite a sweep runs, and what state each is in, for batch schedulers (issue E1).

A Slurm array job runs one cell per task: ``hetbench sweep SUITE --list-cells`` prints every cell's index,
run id and state, and ``--cell I`` (or ``--shard i/n``, the cells whose index is i modulo n) runs only those.
Indices count the suite's cells in the order the suite expands them, before cells whose data is missing
here are left out, so every node of a cluster means the same cell by the same number whatever it holds.

A cell is ``finished`` when its run folder is complete, ``claimed`` while a live writer holds its
temporary folder (``benchmarks.store.claims``: a fresh heartbeat, or a living PID on the claim's own host),
and ``pending`` otherwise, which includes an interrupted run a sweep will resume from its checkpoint.
With ``--published DIR`` (an earlier report of the suite, whose CSVs are committed when its result folders
are not), a cell whose run that report lists as finished (included or diverged) is ``published``: a sweep on a new machine
leaves it, and ``hetbench report SUITE --published DIR`` takes its rows from that report.
"""
from __future__ import annotations

import csv
import re
from dataclasses import replace
from pathlib import Path

from benchmarks.core.typed import ConfigError
from benchmarks.experiments.config import RunConfig
from benchmarks.experiments.suites import Suite
from benchmarks.store.claims import live_claim
from benchmarks.store.rundir import RunDirectory

FINISHED, CLAIMED, PENDING, PUBLISHED = "finished", "claimed", "pending", "published"
# The report's tables of runs and curves (reports.tidy; the report layer sits above this one).
PUBLISHED_RUNS, PUBLISHED_CURVES = "runs.csv", "curves.csv"
_SHARD = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


def _range_text(suite: Suite) -> str:
    n = len(suite.cells)
    return f"suite {suite.name} has {n} cells, 0 to {n - 1}" if n else f"suite {suite.name} has no cells"


def cell_index(text: str, suite: Suite) -> int:
    """``--cell I``: a cell index of the suite, checked against its size."""
    try:
        index = int(text.strip())
    except ValueError:
        raise ConfigError(f"--cell: {text!r} is not a cell index; {_range_text(suite)}") from None
    if not 0 <= index < len(suite.cells):
        raise ConfigError(f"--cell: {index} is out of range; {_range_text(suite)}")
    return index


def shard_indices(text: str, suite: Suite) -> list[int]:
    """``--shard i/n``: the cells whose index is i modulo n, so each shard gets a mix of the suite's axes."""
    match = _SHARD.fullmatch(text)
    if not match or not 0 <= int(match[1]) < int(match[2]):
        raise ConfigError(f"--shard: {text!r} must be i/n with n >= 1 and 0 <= i < n (e.g. 0/4); "
                          f"{_range_text(suite)}")
    i, n = int(match[1]), int(match[2])
    return list(range(i, len(suite.cells), n))


def selected_indices(suite: Suite, cell: str | None = None, shard: str | None = None) -> list[int]:
    if cell is not None and shard is not None:
        raise ConfigError("--cell: give either --cell or --shard, not both")
    if cell is not None:
        return [cell_index(cell, suite)]
    if shard is not None:
        return shard_indices(shard, suite)
    return list(range(len(suite.cells)))


def only(suite: Suite, indices: list[int]) -> Suite:
    """The suite restricted to ``indices``; it files its runs exactly where the whole suite would."""
    return replace(suite, cells=[suite.cells[i] for i in indices])


def published_run_ids(directory: str | Path, suite_name: str) -> frozenset[str]:
    """The run ids an earlier report of ``suite_name`` (a folder holding its runs.csv and curves.csv) lists
    as finished (included, or diverged); ConfigError, one line naming ``--published``, when the folder lacks
    either table or holds another suite."""
    path = Path(directory) / PUBLISHED_RUNS
    if not Path(directory).is_dir():
        raise ConfigError(f"--published: {directory} is not a folder; give a report folder written by "
                          "`hetbench report SUITE`")
    if not (Path(directory) / PUBLISHED_CURVES).is_file():
        raise ConfigError(f"--published: {directory} has no {PUBLISHED_CURVES}; give a report folder written by "
                          "`hetbench report SUITE`")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"--published: cannot read {path} ({getattr(exc, 'strerror', None) or exc}); give "
                          "a report folder written by `hetbench report SUITE`") from None
    if rows and not {"suite", "run", "excluded", "status"} <= set(rows[0]):
        raise ConfigError(f"--published: {path} lacks the columns suite, run, excluded and status of a report's "
                          "runs.csv")
    suites = sorted({row["suite"] for row in rows} - {""})
    if suites and suites != [suite_name]:
        raise ConfigError(f"--published: {path} holds suite {', '.join(suites)}, not {suite_name}")
    return frozenset(row["run"] for row in rows if row["excluded"] == "" or row["status"] == "diverged")


def cell_state(root: Path, suite_name: str, cfg: RunConfig, published: frozenset[str] = frozenset()) -> str:
    out = RunDirectory(root, suite_name, cfg.run_id())
    if out.is_complete():
        return FINISHED
    if cfg.run_id() in published:
        return PUBLISHED
    return CLAIMED if live_claim(out.tmp) is not None else PENDING


def cell_lines(suite: Suite, root: Path, indices: list[int], published: frozenset[str] = frozenset()) -> list[str]:
    """``--list-cells``: one ``index run_id state`` line per cell, whitespace-separated for shell tools."""
    return [f"{i} {suite.cells[i].run_id()} {cell_state(root, suite.name, suite.cells[i], published)}"
            for i in indices]


def unpublished(suite: Suite, indices: list[int], published: frozenset[str]) -> list[int]:
    """``indices`` less the cells whose run the published report already holds."""
    return [i for i in indices if suite.cells[i].run_id() not in published]


def claimed_elsewhere(cells: list[RunConfig], root: Path, suite_name: str) -> list[tuple[RunConfig, dict]]:
    """The cells a live writer (another host, another sweep, an array task) holds, with its claim: a
    sweep leaves them to it instead of failing on them."""
    held = []
    for cfg in cells:
        claim = live_claim(RunDirectory(root, suite_name, cfg.run_id()).tmp)
        if claim is not None:
            held.append((cfg, claim))
    return held
