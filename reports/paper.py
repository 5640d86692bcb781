"""Our accuracy beside the DynaFed paper's, for every (algorithm, dataset, alpha) both have.

A number from a reduced setting (fewer rounds, clients or a narrower model) is not comparable to
the paper's on its face, so such cells carry a marker and the table lists, once each, every way in
which those runs differ from the paper's setting.
"""
from __future__ import annotations

import csv
from pathlib import Path

from reports.load import Run, SuiteRuns, is_finite
from reports.names import algorithm_order, algorithm_title, setting_labels, setting_order
from reports.render import Cell, Table
from reports.tables import Stats

REFERENCE = Path(__file__).resolve().parent / "reference" / "dynafed_table.csv"
# The paper partitions with a (balanced) Dirichlet; its alpha means nothing for other schemes.
DIRICHLET_SCHEMES = ("balanced_dirichlet", "dirichlet")
REDUCED = "†"


def load_reference(path: Path = REFERENCE) -> dict[tuple[str, str, float], tuple[float, float]]:
    """(algorithm, dataset, alpha) -> (mean, std) in percent."""
    with open(path, newline="") as fh:
        return {(row["algorithm"], row["dataset"], round(float(row["alpha"]), 6)):
                (float(row["accuracy_mean"]), float(row["accuracy_std"])) for row in csv.DictReader(fh)}


def paper_table(suite: SuiteRuns, reference: dict | None = None) -> Table:
    reference = load_reference() if reference is None else reference
    labels = setting_labels(r.setting for r in suite.runs)
    rows, deviations = [], set()
    for setting in setting_order(labels):
        if setting.scheme not in DIRICHLET_SCHEMES:
            continue
        for algorithm in algorithm_order(r.algorithm for r in suite.runs if r.setting == setting):
            paper = reference.get((algorithm, setting.dataset, round(setting.level, 6)))
            runs = [r for r in suite.runs if r.algorithm == algorithm and r.setting == setting]
            stats = Stats(tuple(100.0 * r.summary["final"]["test_accuracy"] for r in runs
                                if is_finite(r.summary["final"]["test_accuracy"])))
            if paper is None or not stats.n:
                continue
            reduced = _deviations(runs)
            deviations.update(reduced)
            rows.append([Cell(algorithm_title(algorithm)), Cell(labels[setting]), Cell(str(stats.n)),
                         Cell(stats.text() + (REDUCED if reduced else "")), Cell(f"{paper[0]:.2f} ± {paper[1]:.2f}"),
                         Cell(f"{stats.mean - paper[0]:+.2f}")])
    notes = [f"{REDUCED} Reduced setting: these runs differ from the paper's setting in "
             + "; ".join(sorted(deviations)) + "."] if deviations else []
    caption = ("Ours: final-round test accuracy, mean ± sample std over our seeds. Paper: the DynaFed authors' "
               "results table (transcribed; see reports/reference/README.md), which does not say whether its "
               "values are final- or best-round. Δ = ours − paper, in percentage points.")
    return Table("paper_comparison", "Comparison with the DynaFed paper (%)", caption,
                 ["Algorithm", "Setting", "Seeds", "Ours", "Paper", "Δ"], rows, label_columns=2, notes=notes,
                 empty_text="No run of this suite matches an (algorithm, dataset, α) of the DynaFed paper's table.")


def _deviations(runs: list[Run]) -> list[str]:
    return sorted({d for r in runs for d in r.summary["paper_deviations"]})
