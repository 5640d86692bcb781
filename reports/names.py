"""How algorithms, datasets and settings are named and ordered in every table and figure.

One fixed order (the DynaFed paper's, then alphabetical for anything else) keeps rows, columns and
figure styles stable across reports, so two reports can be compared by eye and rebuilt bit for bit.
Titles come from the runs themselves (each summary.json records its algorithm's and dataset's title,
as the registries declare them, and runs.csv carries them on), so a new algorithm or dataset needs
nothing here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# The DynaFed paper's row and column order; names not listed sort after these, alphabetically.
ALGORITHMS = ("fedavg", "fedprox", "scaffold", "feddf", "fedbe", "abavg", "fedgen", "fedmix", "dynafed")
DATASETS = ("fmnist", "cifar10", "cinic10", "cifar100", "synthetic")
SCHEMES = {
    "balanced_dirichlet": "balanced Dir.", "dirichlet": "Dir.", "quantity": "quantity", "shards": "shards",
    "iid": "IID",
}
# Schemes whose level is a Dirichlet concentration alpha (the paper's axis).
ALPHA_SCHEMES = ("balanced_dirichlet", "dirichlet", "quantity")
BASELINE = "fedavg"


@dataclass(frozen=True)
class Setting:
    """One column of the report: the data and the heterogeneity the clients saw.

    ``level`` is the scheme's own knob (alpha for the Dirichlet and quantity schemes, classes per
    client for shards, 0 for IID), so that settings sort numerically within a scheme. ``extra`` names
    dataset settings that differ between runs of one dataset (``train_subset=9000``): such runs are
    different columns, never one average.
    """
    dataset: str
    scheme: str
    level: float
    extra: str = ""


# Titles as the runs recorded them; filled by the loaders from the runs' own records.
TITLES: dict[str, str] = {}


def remember_titles(pairs) -> None:
    """``pairs``: (kind, name, title) with kind "algorithm" or "dataset"; empty titles are skipped."""
    TITLES.clear()
    for kind, name, title in pairs:
        if name and title:
            TITLES[f"{kind}:{name}"] = title


def algorithm_title(name: str) -> str:
    return TITLES.get(f"algorithm:{name}", name)


def dataset_title(name: str) -> str:
    return TITLES.get(f"dataset:{name}", name)


def algorithm_key(name: str):
    known = list(ALGORITHMS)
    return (known.index(name), "") if name in known else (len(known), name)


def algorithm_order(names) -> list[str]:
    return sorted(set(names), key=algorithm_key)


def row_order(rows) -> list[tuple[str, str]]:
    """Rows are (algorithm, hyperparameter label); an algorithm's unlabelled row comes first, labelled ones
    in natural order (iterations=30 before iterations=120)."""
    return sorted(set(rows), key=lambda r: (algorithm_key(r[0]), natural_key(r[1])))


def natural_key(text: str) -> tuple:
    """Numbers inside ``text`` compare as numbers; every part is tagged, so any two keys compare."""
    parts = re.split(r"(-?\d+(?:\.\d+)?(?:e-?\d+)?)", text)
    return tuple((0, float(p), "") if i % 2 else (1, 0.0, p) for i, p in enumerate(parts))


def row_title(row: tuple[str, str]) -> str:
    algorithm, label = row
    return f"{algorithm_title(algorithm)} ({label})" if label else algorithm_title(algorithm)


def setting_key(s: Setting):
    known = list(DATASETS)
    return (known.index(s.dataset) if s.dataset in known else len(known), s.dataset, s.scheme, s.level, s.extra)


def setting_order(settings) -> list[Setting]:
    return sorted(set(settings), key=setting_key)


def setting_labels(settings) -> dict[Setting, str]:
    """Short column titles; the scheme is named only when the suite mixes schemes."""
    settings = setting_order(settings)
    show_scheme = len({s.scheme for s in settings}) > 1
    return {s: _label(s, show_scheme) for s in settings}


def setting_slug(setting: Setting) -> str:
    """A file-name fragment that is unique per setting (the extra part is reduced to safe characters)."""
    slug = f"{setting.dataset}_{setting.scheme}_{setting.level:g}"
    if setting.extra:
        slug += "_" + "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in setting.extra)
    return slug


def _label(setting: Setting, show_scheme: bool) -> str:
    data = dataset_title(setting.dataset)
    extra = f" ({setting.extra})" if setting.extra else ""
    if setting.scheme == "iid":
        return f"{data} IID{extra}"
    knob = f"k={setting.level:g}" if setting.scheme == "shards" else f"α={setting.level:g}"
    scheme = f"{SCHEMES.get(setting.scheme, setting.scheme)} " if show_scheme or setting.scheme == "shards" else ""
    return f"{data} {scheme}{knob}{extra}"
