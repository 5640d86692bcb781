"""How algorithms, datasets and settings are named and ordered in every table and figure.

One fixed order (the DynaFed paper's, then alphabetical for anything else) keeps rows, columns and
figure styles stable across reports, so two reports can be compared by eye and rebuilt bit for bit.
Titles come from the runs themselves (each summary.json records its algorithm's and dataset's title,
as the registries declare them), so a new algorithm or dataset needs nothing here.
"""
from __future__ import annotations

from reports.load import TITLES, Setting

# The DynaFed paper's row and column order; names not listed sort after these, alphabetically.
ALGORITHMS = ("fedavg", "fedprox", "scaffold", "feddf", "fedbe", "abavg", "fedgen", "fedmix", "dynafed")
DATASETS = ("fmnist", "cifar10", "cinic10", "cifar100", "synthetic")
SCHEMES = {
    "balanced_dirichlet": "balanced Dir.", "dirichlet": "Dir.", "quantity": "quantity", "shards": "shards",
    "iid": "IID",
}


def algorithm_title(name: str) -> str:
    return TITLES.get(f"algorithm:{name}", name)


def dataset_title(name: str) -> str:
    return TITLES.get(f"dataset:{name}", name)


def algorithm_order(names) -> list[str]:
    known = list(ALGORITHMS)
    return sorted(set(names), key=lambda n: (known.index(n), "") if n in known else (len(known), n))


def setting_order(settings) -> list[Setting]:
    known = list(DATASETS)
    return sorted(set(settings), key=lambda s: (known.index(s.dataset) if s.dataset in known else len(known),
                                                s.dataset, s.scheme, s.level))


def setting_labels(settings) -> dict[Setting, str]:
    """Short column titles; the scheme is named only when the suite mixes schemes."""
    settings = setting_order(settings)
    show_scheme = len({s.scheme for s in settings}) > 1
    return {s: _label(s, show_scheme) for s in settings}


def setting_slug(setting: Setting) -> str:
    """A file-name fragment that is unique per setting."""
    return f"{setting.dataset}_{setting.scheme}_{setting.level:g}"


def _label(setting: Setting, show_scheme: bool) -> str:
    data = dataset_title(setting.dataset)
    if setting.scheme == "iid":
        return f"{data} IID"
    knob = f"k={setting.level:g}" if setting.scheme == "shards" else f"α={setting.level:g}"
    scheme = f"{SCHEMES.get(setting.scheme, setting.scheme)} " if show_scheme or setting.scheme == "shards" else ""
    return f"{data} {scheme}{knob}"
