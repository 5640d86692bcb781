"""Read one suite's run folders and sort them into runs a report may average and runs it must not.

Averaging an unfinished, diverged or older-format run into a mean would silently bias it, so every
such folder becomes an ``Excluded`` entry carrying the reason, which the report lists on its own.
Only the standard library is used: reading results must never pull in torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.core.dotted import flatten, has_dotted
from benchmarks.store.schema import (CONFIG_FILE, ROUNDS_FILE, SCHEMA, SUMMARY_FILE, TIMINGS_FILE, SchemaError,
                                     algorithm_title, curve, dataset_title, read_json, read_long_csv)

# Dotted paths a summary must have for every table and figure of the report to be built from it.
REQUIRED_KEYS = (
    "run_id", "status", "seed", "config.algorithm", "config.dataset.name", "config.partition.scheme",
    "config.partition.alpha", "partition.class_counts", "final.round", "final.test_accuracy", "best_val",
    "timing.total_seconds", "paper_deviations", "artifacts",
)


@dataclass(frozen=True)
class Setting:
    """One column of the report: the data and the heterogeneity the clients saw.

    ``level`` is the scheme's own knob (alpha for the Dirichlet and quantity schemes, classes per
    client for shards, 0 for IID), so that settings sort numerically within a scheme.
    """
    dataset: str
    scheme: str
    level: float


@dataclass
class Run:
    name: str
    algorithm: str
    setting: Setting
    seed: int
    summary: dict
    test_curve: dict[int, float]
    seconds_per_round: dict[str, float]


@dataclass(frozen=True)
class Excluded:
    name: str
    reason: str
    algorithm: str | None = None
    setting: Setting | None = None
    diverged: bool = False


@dataclass
class SuiteRuns:
    runs: list[Run] = field(default_factory=list)
    excluded: list[Excluded] = field(default_factory=list)


def load_suite(suite_dir: Path) -> SuiteRuns:
    """Every folder under ``suite_dir``, in name order, as a usable run or an excluded one."""
    out = SuiteRuns()
    TITLES.clear()
    for path in sorted(p for p in Path(suite_dir).iterdir() if p.is_dir()):
        item = load_run(path)
        (out.excluded if isinstance(item, Excluded) else out.runs).append(item)
    remember_titles(out.runs)
    ambiguous = _ambiguous_seeds(out.runs)
    out.excluded = sorted(out.excluded + list(ambiguous.values()), key=lambda e: e.name)
    out.runs = [r for r in out.runs if r.name not in ambiguous]
    return out


def load_run(path: Path) -> Run | Excluded:
    config = _read_json(path / CONFIG_FILE)
    algorithm, setting = _identity(config) if isinstance(config, dict) else (None, None)
    if path.name.startswith(".tmp-"):
        return Excluded(path.name, "unfinished: temporary folder of a crashed or still running run",
                        algorithm, setting)
    if not (path / SUMMARY_FILE).is_file():
        return Excluded(path.name, "unfinished: no summary.json", algorithm, setting)
    summary = _read_json(path / SUMMARY_FILE)
    if not isinstance(summary, dict):
        return Excluded(path.name, f"unreadable summary.json ({summary})", algorithm, setting)
    problem = _schema_problem(summary)
    if problem:
        return Excluded(path.name, problem, algorithm, setting)
    algorithm, setting = _identity(summary["config"])
    divergence = _divergence(summary)
    if divergence:
        return Excluded(path.name, divergence, algorithm, setting, diverged=True)
    missing = [name for name in (ROUNDS_FILE, TIMINGS_FILE) if not (path / name).is_file()]
    if missing:
        return Excluded(path.name, f"missing {', '.join(missing)}", algorithm, setting)
    try:
        rounds, timings = read_long_csv(path / ROUNDS_FILE), read_long_csv(path / TIMINGS_FILE)
    except (SchemaError, OSError) as exc:
        return Excluded(path.name, f"damaged results file: {exc}", algorithm, setting)
    return Run(name=path.name, algorithm=algorithm, setting=setting, seed=int(summary["seed"]),
               summary=summary, test_curve=curve(rounds, "test", "accuracy"),
               seconds_per_round=_seconds_per_round(timings))


# Titles as the runs recorded them (``algorithm_title``, ``dataset.title`` in summary.json): the report
# names what the registries named, without importing them.
TITLES: dict[str, str] = {}


def remember_titles(runs: list[Run]) -> None:
    for run in runs:
        TITLES[f"algorithm:{run.algorithm}"] = algorithm_title(run.summary)
        TITLES[f"dataset:{run.setting.dataset}"] = dataset_title(run.summary)


def _ambiguous_seeds(runs: list[Run]) -> dict[str, Excluded]:
    """Runs that share algorithm, setting and seed but not their config (a stale config, or an axis
    the tables have no column for): averaging them would count one seed twice, and nothing says
    which one is meant, so all of them are set aside with the settings they differ in."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault((run.algorithm, run.setting, run.seed), []).append(run)
    out = {}
    for (algorithm, setting, seed), group in groups.items():
        if len(group) < 2:
            continue
        configs = [flatten(r.summary["config"]) for r in group]
        differ = sorted(k for k in set().union(*configs) if len({repr(c.get(k)) for c in configs}) > 1)
        reason = (f"{len(group)} runs of seed {seed} for this algorithm and setting, with configs that differ in "
                  f"{', '.join(differ) or 'nothing'}; remove the stale ones")
        out.update({r.name: Excluded(r.name, reason, algorithm, setting) for r in group})
    return out


def is_finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _identity(config: dict) -> tuple[str | None, Setting | None]:
    try:
        part = config["partition"]
        level = part["classes_per_client"] if part["scheme"] == "shards" else (
            0.0 if part["scheme"] == "iid" else part["alpha"])
        return config["algorithm"], Setting(config["dataset"]["name"], part["scheme"], float(level))
    except (KeyError, TypeError, ValueError):
        return None, None


def _schema_problem(summary: dict) -> str | None:
    if summary.get("schema") != SCHEMA:
        return f"older results format: schema {summary.get('schema')!r}, current {SCHEMA}"
    missing = [key for key in REQUIRED_KEYS if not has_dotted(summary, key)]
    return f"summary.json lacks {', '.join(missing)}" if missing else None


def _divergence(summary: dict) -> str | None:
    if summary["status"] == "diverged":
        info = summary.get("diverged") or {}
        return f"diverged at round {info.get('round', '?')}: {info.get('reason', 'no reason given')}"
    if summary["status"] != "complete":
        return f"unknown status {summary['status']!r}"
    if not is_finite(summary["final"]["test_accuracy"]):
        return "diverged: final test accuracy is NaN"
    return None


def _read_json(path: Path):
    """The parsed file, or a short error text (the caller decides whether that matters)."""
    try:
        return read_json(path)
    except SchemaError as exc:
        return str(exc).split(": ", 1)[-1]


def _seconds_per_round(rows) -> dict[str, float]:
    """Each timed quantity summed over the run and divided by its rounds.

    A named server part that only some rounds time (say, a synthesis every k rounds) thereby counts
    as zero in the others, which is what its cost per round really is.
    """
    totals: dict[str, float] = {}
    rounds: set[int] = set()
    for row in rows:
        rounds.add(row.round)
        totals[row.metric] = totals.get(row.metric, 0.0) + row.value
    return {metric: total / len(rounds) for metric, total in sorted(totals.items())} if rounds else {}
