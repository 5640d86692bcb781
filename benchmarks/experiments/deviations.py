"""Algorithm hyperparameters a suite sets away from the official code's values, and why.

The official value of each hyperparameter is declared beside it (``setting(official=...)``, per dataset
where the released scripts differ). A suite file with a ``[deviations]`` table must give a reason for
every such value its cells use, and only for those: a deviation without a reason, or a reason whose
setting no cell changes, is an error when the suite loads. Reports list the deviations with their
reasons in a table and in the footnotes of the accuracy tables.
"""
from __future__ import annotations

from benchmarks.core.typed import ConfigError, official_deviations
from benchmarks.engine.registry import get_algorithm
from benchmarks.engine.settings import RunConfig

NO_TABLE = "no reason given: the suite file has no [deviations] table"

# key -> {(value, official): datasets whose cells use that pair}
Found = dict[str, dict[tuple, set[str]]]


def cell_deviations(cfg: RunConfig) -> dict[str, tuple]:
    """``algorithms.<name>.<setting>`` -> (value, official) for the cell's own algorithm."""
    return {f"algorithms.{cfg.algorithm}.{name}": pair
            for name, pair in official_deviations(cfg.hparams, cfg.dataset.name).items()}


def collect(cells: list[RunConfig]) -> Found:
    found: Found = {}
    for cfg in cells:
        for key, pair in cell_deviations(cfg).items():
            found.setdefault(key, {}).setdefault(_hashable(pair), set()).add(cfg.dataset.name)
    return found


def check_listed(reasons: dict[str, str], cells: list[RunConfig]) -> None:
    """Every deviation of ``cells`` has a reason in ``reasons``, and every reason a deviation."""
    found = collect(cells)
    for key, pairs in found.items():
        if key not in reasons:
            (value, official), datasets = next(iter(pairs.items()))
            raise ConfigError(f"deviations.{key}: the cells set {_text(value)} (official {_text(official)}, "
                              f"in {', '.join(sorted(datasets))} cells); say why under [deviations]")
    for key in reasons:
        if key not in found:
            raise ConfigError(f"deviations.{key}: no cell sets it away from the official value; remove the line")


def deviation_rows(cells: list[RunConfig], reasons: dict[str, str] | None,
                   explained: Found | None = None) -> list[dict[str, str]]:
    """One row per deviating setting of ``cells``, for reports: algorithm (its title), setting, ours,
    official, why. A reason is given only for values the suite file's own cells use (``explained``, when
    ``cells`` are others: changed by ``--set``, or the subset a results folder holds)."""
    rows = []
    for key, pairs in sorted(collect(cells).items()):
        _, algorithm, name = key.split(".")
        mine = [c for c in cells if c.algorithm == algorithm]
        official_too = any(f"algorithms.{algorithm}.{name}" not in cell_deviations(c) for c in mine)
        ours: dict = {}
        official: dict = {}
        for (value, off), datasets in pairs.items():
            ours.setdefault(value, set()).update(datasets)
            official.setdefault(off, set()).update(datasets)
        every = {c.dataset.name for c in mine}
        ours_text = _values_text(ours, every)
        if official_too and len(ours) == 1 and next(iter(ours.values())) == every:
            ours_text += " (and the official value in other cells)"
        rows.append({"algorithm": get_algorithm(algorithm).title, "setting": name, "ours": ours_text,
                     "official": _values_text(official, every), "why": _reason(key, pairs, reasons, explained)})
    return rows


def _reason(key: str, pairs: dict[tuple, set[str]], reasons: dict[str, str] | None, explained: Found | None) -> str:
    if reasons is None:
        return NO_TABLE
    if explained is not None:
        known = explained.get(key, {})
        if any(not datasets <= known.get(pair, set()) for pair, datasets in pairs.items()):
            return "changed by --set or --set-file: the suite file gives no reason for this value"
    return reasons.get(key, "")


def _values_text(values: dict, every: set[str]) -> str:
    """"10" for one value over every dataset of the algorithm's cells; "10 (cifar10, fmnist) / 2 (cifar100)"
    when datasets differ (or only some deviate); "120, 30" when one dataset's cells use several (an axis)."""
    groups = list(values.values())
    named = [d for group in groups for d in group]
    if len(named) != len(set(named)):
        return ", ".join(_text(value) for value in values)
    if len(values) == 1 and groups[0] == every:
        return _text(next(iter(values)))
    ordered = sorted(values.items(), key=lambda item: sorted(item[1]))
    return " / ".join(f"{_text(value)} ({', '.join(sorted(group))})" for value, group in ordered)


def _hashable(pair: tuple) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in pair)


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
