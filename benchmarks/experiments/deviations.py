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


def cell_deviations(cfg: RunConfig) -> dict[str, tuple]:
    """``algorithms.<name>.<setting>`` -> (value, official) for the cell's own algorithm."""
    return {f"algorithms.{cfg.algorithm}.{name}": pair
            for name, pair in official_deviations(cfg.hparams, cfg.dataset.name).items()}


def _collect(cells: list[RunConfig]) -> dict[str, dict[tuple, set[str]]]:
    """key -> {(value, official): datasets whose cells use that pair}."""
    found: dict[str, dict[tuple, set[str]]] = {}
    for cfg in cells:
        for key, pair in cell_deviations(cfg).items():
            found.setdefault(key, {}).setdefault(_hashable(pair), set()).add(cfg.dataset.name)
    return found


def check_listed(reasons: dict[str, str], cells: list[RunConfig]) -> None:
    """Every deviation of ``cells`` has a reason in ``reasons``, and every reason a deviation."""
    found = _collect(cells)
    for key, pairs in found.items():
        if key not in reasons:
            (value, official), datasets = next(iter(pairs.items()))
            raise ConfigError(f"deviations.{key}: the cells set {_text(value)} (official {_text(official)}, "
                              f"in {', '.join(sorted(datasets))} cells); say why under [deviations]")
    for key in reasons:
        if key not in found:
            raise ConfigError(f"deviations.{key}: no cell sets it away from the official value; remove the line")


def deviation_rows(cells: list[RunConfig], reasons: dict[str, str] | None) -> list[dict[str, str]]:
    """One row per deviating setting, for reports: algorithm (its title), setting, ours, official, why.
    ``ours`` and ``official`` name the datasets when they differ between them."""
    rows = []
    for key, pairs in sorted(_collect(cells).items()):
        _, algorithm, name = key.split(".")
        ours: dict = {}
        official: dict = {}
        for (value, off), datasets in pairs.items():
            ours.setdefault(value, set()).update(datasets)
            official.setdefault(off, set()).update(datasets)
        reason = (reasons or {}).get(key) or ("no reason given: the suite file has no [deviations] table"
                                              if reasons is None else "set by --set or --set-file; the suite "
                                              "file gives no reason")
        rows.append({"algorithm": get_algorithm(algorithm).title, "setting": name, "ours": _by_dataset(ours),
                     "official": _by_dataset(official), "why": reason})
    return rows


def _by_dataset(values: dict) -> str:
    """"10" for one value; "10 (cifar10, fmnist); 2 (cifar100)" when each dataset has one of several;
    "120, 30" when a dataset's cells use several (an ablation's axis)."""
    if len(values) == 1:
        return _text(next(iter(values)))
    datasets = [d for group in values.values() for d in group]
    if len(datasets) != len(set(datasets)):
        return ", ".join(_text(value) for value in values)
    ordered = sorted(values.items(), key=lambda item: sorted(item[1]))
    return "; ".join(f"{_text(value)} ({', '.join(sorted(group))})" for value, group in ordered)


def _hashable(pair: tuple) -> tuple:
    return tuple(tuple(v) if isinstance(v, list) else v for v in pair)


def _text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
