"""Our accuracy beside the DynaFed paper's: each method's gain over FedAvg (the comparison that survives a
reduced setting), and the raw numbers for every (algorithm, dataset, alpha) both have.

A number from a reduced setting (fewer rounds, clients or a narrower model) is not comparable to the
paper's on its face: every method loses accuracy. What a reduced setting can still show is whether
a method beats FedAvg, and by how much, under the same budget; so the gain table sets each method's
accuracy minus FedAvg's beside the paper's same difference. Raw cells from a reduced setting carry a
marker, and the table lists, once each, every way in which those runs differ from the paper's setting.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from reports.frames import Suite, rows_of, settings_of
from reports.names import ALPHA_SCHEMES, BASELINE, algorithm_title, row_order, row_title, setting_labels, setting_order
from reports.provenance import provenance
from reports.render import Cell, Table
from reports.tables import DASH, NOT_ENGAGED, Stats, cell_stats, deviations_note, engaged_note, not_engaged

REFERENCE = Path(__file__).resolve().parent / "reference" / "dynafed_table.csv"
REDUCED = "†"


def load_reference(path: Path = REFERENCE) -> dict[tuple[str, str, float], tuple[float, float]]:
    """(algorithm, dataset, alpha) -> (mean, std) in percent."""
    table = pd.read_csv(path)
    return {(row.algorithm, row.dataset, round(float(row.alpha), 6)):
            (float(row.accuracy_mean), float(row.accuracy_std)) for row in table.itertuples(index=False)}


def paper_value(reference: dict, algorithm: str, setting) -> tuple[float, float] | None:
    if setting.scheme not in ALPHA_SCHEMES or setting.scheme == "quantity":
        return None  # the paper's alpha is a label-skew Dirichlet's; it means nothing for other schemes
    return reference.get((algorithm, setting.dataset, round(setting.level, 6)))


def paper_table(suite: Suite, variant: str, reference: dict | None = None) -> Table:
    reference = load_reference() if reference is None else reference
    runs = suite.included(variant)
    stats = cell_stats(runs, runs["final_test_accuracy"] * 100.0)
    labels = setting_labels(settings_of(runs))
    rows, deviations, flagged = [], set(), False
    for setting in setting_order(labels):
        for row in row_order(r for (r, s) in stats if s == setting):
            paper, ours = paper_value(reference, row[0], setting), stats[row, setting]
            if paper is None or not ours.n:
                continue
            reduced = _deviations(runs, row, setting)
            deviations.update(reduced)
            mark = (REDUCED if reduced else "") + (NOT_ENGAGED if not_engaged(runs, row, setting) else "")
            flagged = flagged or NOT_ENGAGED in mark
            rows.append([Cell(row_title(row)), Cell(labels[setting]), Cell(str(ours.n)),
                         Cell(ours.text(show_n=False) + mark),
                         Cell(f"{paper[0]:.2f} ± {paper[1]:.2f}"), Cell(f"{ours.mean - paper[0]:+.2f}")])
    notes = [f"{REDUCED} Reduced setting: these runs differ from the paper's setting in "
             + "; ".join(sorted(deviations)) + "."] if deviations else []
    caption = ("Ours: final-round test accuracy, mean ± sample std over our seeds (n). Paper: the DynaFed authors' "
               "results table (transcribed; see reports/reference/README.md), which does not say whether its "
               "values are final- or best-round. Δ = ours − paper, in percentage points: in a reduced setting it "
               "measures the reduction more than the method (see the gain table).")
    return Table("paper_comparison", "Comparison with the DynaFed paper (%)", caption,
                 ["Algorithm", "Setting", "n", "Ours", "Paper", "Δ"], rows, label_columns=2,
                 notes=notes + engaged_note(flagged) + deviations_note(suite) + [provenance(suite.name, runs).line()],
                 empty_text="No run of this suite matches an (algorithm, dataset, α) of the DynaFed paper's table.")


def gain_table(suite: Suite, variant: str, reference: dict | None = None) -> Table:
    """Per setting, each method's final accuracy minus FedAvg's, ours (paired by seed) beside the paper's."""
    reference = load_reference() if reference is None else reference
    runs = suite.included(variant)
    settings = setting_order(settings_of(runs))
    baselines = {s: _baseline(runs, s) for s in settings}
    settings = [s for s in settings if baselines[s] is not None]
    rows = [r for r in row_order(rows_of(runs)) if r[0] != BASELINE or r[1]]
    gains = {(row, s): paired_gain(runs, row, s, baselines[s]) for row in rows for s in settings}
    most = max((g.n for g in gains.values() if g is not None), default=0)
    labels = setting_labels(settings)
    table_rows = []
    for row in rows:
        if all(gains[row, s] is None for s in settings):
            continue
        cells = [Cell(row_title(row))]
        for s in settings:
            if row == baselines[s]:  # a labelled FedAvg row that is this setting's baseline
                cells.append(Cell("baseline"))
                continue
            ours, paper, base = gains[row, s], paper_value(reference, row[0], s), paper_value(reference, BASELINE, s)
            theirs = f"{paper[0] - base[0]:+.2f}" if paper is not None and base is not None else DASH
            if ours is None:
                cells.append(Cell(DASH if theirs == DASH else f"{DASH} / {theirs}"))
                continue
            spread = f" ± {ours.std:.2f}" if ours.n >= 2 else ""
            count = f" (n={ours.n})" if ours.n != most else ""
            mark = NOT_ENGAGED if not_engaged(runs, row, s) else ""
            cells.append(Cell(f"{ours.mean:+.2f}{spread}{count}{mark} / {theirs}"))
        table_rows.append(cells)
    fedavg = algorithm_title(BASELINE)
    caption = (f"Each method's final test accuracy minus {fedavg}'s, in percentage points: ours / the paper's. Ours "
               f"is paired by seed (same partition and client sampling): the mean ± sample std over the seeds both "
               f"ran of (method − {fedavg}), over n = {most} seed{'s' if most != 1 else ''} unless shown. Paper: "
               f"the same difference in the DynaFed authors' table (– where it has no such number). At reduced "
               f"scale every accuracy drops; whether, and by how much, a method beats {fedavg} is what can still "
               f"be compared with the paper.")
    flagged = any(NOT_ENGAGED in c.text for r in table_rows for c in r[1:])
    return Table("gain_over_fedavg", f"Gain over {fedavg}: ours / paper (points)", caption,
                 ["Algorithm"] + [labels[s] for s in settings], table_rows,
                 empty_text=f"No setting has both {fedavg} and another method.",
                 notes=engaged_note(flagged) + deviations_note(suite) + [provenance(suite.name, runs).line()])



def paired_gain(runs: pd.DataFrame, row, setting, baseline) -> Stats | None:
    """(row − baseline) final accuracy in points over the seeds both have; None when they share none."""
    mine, base = _by_seed(runs, row, setting), _by_seed(runs, baseline, setting)
    diff = (mine - base).dropna()
    if diff.empty:
        return None
    return Stats(len(diff), float(diff.mean()), float(diff.std()) if len(diff) >= 2 else math.nan)


def _baseline(runs: pd.DataFrame, setting) -> tuple[str, str] | None:
    """FedAvg's row in this setting (its unlabelled row when it has several)."""
    candidates = [r for r in row_order(rows_of(_setting(runs, setting))) if r[0] == BASELINE]
    return candidates[0] if candidates else None


def _by_seed(runs: pd.DataFrame, row, setting) -> pd.Series:
    cell = _setting(runs, setting)
    cell = cell[(cell["algorithm"] == row[0]) & (cell["row_label"] == row[1])]
    seeds = [cell["seed"].astype("int64"), cell["partition_seed"].astype("int64")]
    return pd.Series(100.0 * cell["final_test_accuracy"].to_numpy(), index=pd.MultiIndex.from_arrays(seeds))


def _setting(runs: pd.DataFrame, setting) -> pd.DataFrame:
    return runs[(runs["dataset"] == setting.dataset) & (runs["scheme"] == setting.scheme)
                & (runs["level"] == setting.level) & (runs["column_label"] == setting.extra)]


def _deviations(runs: pd.DataFrame, row, setting) -> list[str]:
    cell = _setting(runs, setting)
    cell = cell[(cell["algorithm"] == row[0]) & (cell["row_label"] == row[1])]
    return sorted({d for text in cell["paper_deviations"] for d in json.loads(text or "[]")})
