"""The report's tables of our own runs: accuracy (final and best-validation), cost, mechanism, settings,
configurations and exclusions, aggregated with pandas from the runs frame.

A table shows one configuration (variant, see ``reports.trust``) at a time. Cells are mean ± sample
standard deviation over seeds and n, with a fixed two-decimal format, so a table rebuilt from the
same results is byte-identical. A cell that lacks seeds, or lost some to divergence, says so in the
cell rather than hiding it in the average. Bold marks a winner only where the gap to the runner-up
exceeds the seeds' own spread: with one seed nothing is ever bold. Every table ends with the
provenance of the runs it shows.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import pandas as pd

from reports.frames import Suite, rows_of, setting_of, settings_of
from reports.names import row_order, row_title, setting_labels, setting_order
from reports.provenance import provenance
from reports.render import Cell, Table
from reports.trust import differences

CELL = ["algorithm", "row_label", "dataset", "scheme", "level", "column_label"]
NOT_ENGAGED = "‡"
DASH = "–"
BOLD_RULE = ("Bold: a column's best mean, only where it exceeds the runner-up's by more than the larger of "
             "their two standard deviations, each over at least 2 seeds (never with one seed).")


@dataclass(frozen=True)
class Stats:
    n: int
    mean: float
    std: float
    diverged: int = 0
    unavailable: int = 0

    def text(self, digits: int = 2, show_n: bool = True) -> str:
        spread = f" ± {self.std:.{digits}f}" if self.n >= 2 else ""
        notes = ([f"n={self.n}"] if show_n else []) + ([f"{self.diverged} diverged"] if self.diverged else [])
        return f"{self.mean:.{digits}f}{spread}" + (f" ({', '.join(notes)})" if notes else "")


def cell_stats(runs: pd.DataFrame, values: pd.Series, diverged: pd.DataFrame | None = None) -> dict:
    """(row, setting) -> Stats of ``values`` (aligned with ``runs``; NaN where a run cannot provide it)."""
    out: dict = {}
    frame = runs.assign(_value=values.astype("float64"))
    for key, group in frame.groupby(CELL, sort=False, dropna=False):
        valid = group["_value"].dropna()
        out[_cell_key(group.iloc[0])] = Stats(len(valid), float(valid.mean()) if len(valid) else math.nan,
                                              float(valid.std()) if len(valid) >= 2 else math.nan,
                                              unavailable=len(group) - len(valid))
    for key, group in (diverged.groupby(CELL, sort=False, dropna=False) if diverged is not None and len(diverged)
                       else []):
        cell = _cell_key(group.iloc[0])
        old = out.get(cell, Stats(0, math.nan, math.nan))
        out[cell] = Stats(old.n, old.mean, old.std, old.diverged + len(group), old.unavailable)
    return out


def winner(cells: dict) -> object | None:
    """The key of the cell whose mean beats every other by more than the seeds' noise, else None: its
    gap to the runner-up must exceed the larger of their standard deviations, over 2+ seeds each."""
    valued = sorted(((s.mean, key, s) for key, s in cells.items() if s.n), key=lambda t: -t[0])
    if len(valued) < 2:
        return None
    (m1, key, best), (m2, _, second) = valued[0], valued[1]
    if best.n < 2 or second.n < 2:
        return None
    return key if m1 - m2 > max(best.std, second.std) else None


def accuracy_table(suite: Suite, variant: str, column: str, stem: str, title: str, caption: str) -> Table:
    """Rows x settings of ``column`` (a fraction per run) in percent, for one configuration."""
    runs, diverged = suite.included(variant), suite.diverged(variant)
    both = pd.concat([runs, diverged])
    rows = row_order(rows_of(both))
    settings = setting_order(settings_of(both))
    grid = cell_stats(runs, runs[column] * 100.0, diverged)
    bold = {s: winner({r: grid[r, s] for r in rows if (r, s) in grid}) for s in settings}
    labels = setting_labels(settings)
    table_rows = []
    for row in rows:
        cells = [Cell(row_title(row))]
        for s in settings:
            cell = _accuracy_cell(grid.get((row, s)), bold[s] == row)
            cells.append(Cell(cell.text + NOT_ENGAGED, cell.bold) if not_engaged(runs, row, s) else cell)
        table_rows.append(cells)
    flagged = any(not_engaged(runs, r, s) for r in rows for s in settings)
    notes = engaged_note(flagged) + deviations_note(suite)
    return Table(stem, title, f"{caption} Cells: mean ± sample standard deviation over seeds (one seed has no ±) "
                 f"and n, the number of seeds. {BOLD_RULE} Unfinished, damaged, diverged and older-format runs "
                 "are never averaged in: see Excluded runs.",
                 ["Algorithm"] + [labels[s] for s in settings], table_rows, empty_text="No finished runs.",
                 notes=notes + [provenance(suite.name, runs).line()])


def eval_split(runs: pd.DataFrame) -> str:
    """"test", or "val" for runs that never evaluated the test set (eval_test = false, as in a
    validation-only ablation): their tables and curves show validation accuracy, and say so."""
    return "val" if len(runs) and runs["final_test_accuracy"].isna().all() else "test"


def main_table(suite: Suite, variant: str, stem: str = "main_table", title: str | None = None,
               extra_caption: str = "") -> Table:
    runs = suite.included(variant)
    rounds = sorted(set(runs["final_round"].dropna().astype(int)))
    when = f"after {rounds[0]} rounds" if len(rounds) == 1 else "at each run's last evaluated round"
    configuration = f", configuration {variant}" if variant != suite.main else ""
    if eval_split(runs) == "val":
        return accuracy_table(suite, variant, "final_val_accuracy", stem,
                              title or f"Final validation accuracy (%){configuration}",
                              f"Validation accuracy of the final global model {when}: these runs did not evaluate "
                              f"the test set (eval_test = false).{extra_caption}")
    return accuracy_table(suite, variant, "final_test_accuracy", stem,
                          title or f"Final test accuracy (%){configuration}",
                          f"Test accuracy of the final global model {when}.{extra_caption}")


def best_val_table(suite: Suite, variant: str) -> Table:
    table = accuracy_table(suite, variant, "best_val_test_accuracy", "best_val_table",
                           "Test accuracy (%) at the best validation round",
                           "Test accuracy at the round where validation accuracy peaked: the round is selected "
                           "on the validation split, never on the best test round.")
    runs = suite.included(variant)
    if len(runs) and (runs["best_val_round"] == runs["final_round"]).all():
        # e.g. a suite that evaluates only at its last round: the table would repeat the main one
        return replace(table, rows=[], notes=table.notes[-1:], empty_text="In every run the best validation round is the final round "
                       "(a suite evaluated only at its end has no other), so this table would repeat the main "
                       "table.")
    return table


def engaged_note(flagged: bool) -> list[str]:
    """The footnote explaining ‡, for a table that marked at least one cell with it."""
    return [f"{NOT_ENGAGED} The method's mechanism did not engage in at least one seed of this cell "
            "(see the mechanism table)."] if flagged else []


def not_engaged(runs: pd.DataFrame, row, setting) -> bool:
    return bool((_cell(runs, row, setting)["mechanism_engaged"] == "no").any())


def _accuracy_cell(stats: Stats | None, bold: bool) -> Cell:
    if stats is None:
        return Cell(DASH)
    if not stats.n:
        if stats.diverged:
            return Cell("diverged" if stats.diverged == 1 else f"{stats.diverged} diverged")
        return Cell("no validation split" if stats.unavailable else DASH)
    return Cell(stats.text(), bold=bold)


CPU_SECONDS = "_cpu_seconds"


def cpu_clocked(timings: pd.DataFrame, runs: pd.DataFrame) -> set[str]:
    """CPU-device runs with CPU seconds for every timed round (a run resumed from a checkpoint written
    before the CPU clock existed has them for its later rounds only, and runs older than it have none).
    On a GPU the process's CPU seconds leave out the device's work, so those runs keep the wall clock."""
    rounds = timings[timings["metric"] == "round_seconds"].groupby("run").size()
    cpu = timings[timings["metric"] == "round" + CPU_SECONDS].groupby("run").size()
    device = runs.set_index("run").get("config.device", pd.Series(dtype=object)).replace("", None).fillna("cpu")
    return {run for run, n in rounds.items() if cpu.get(run, 0) == n and device.get(run, "cpu") == "cpu"}


def on_clock(timings: pd.DataFrame, cpu_runs: set[str]) -> pd.DataFrame:
    """Each run's timings on one clock, under the wall clock's metric names: CPU seconds for the runs in
    ``cpu_runs``, wall seconds for the others."""
    is_cpu = timings["metric"].str.endswith(CPU_SECONDS)
    wanted = timings["run"].isin(cpu_runs)
    chosen = timings[is_cpu == wanted]
    return chosen.assign(metric=chosen["metric"].str.replace(CPU_SECONDS + "$", "_seconds", regex=True))


def time_rows(suite: Suite, runs: pd.DataFrame) -> pd.DataFrame:
    """The timings.csv rows of ``runs``."""
    return suite.curves[(suite.curves["split"] == "time") & suite.curves["run"].isin(runs["run"])]


def run_costs(suite: Suite, runs: pd.DataFrame, cpu_runs: set[str] = frozenset()
              ) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Per run: seconds a round (round, client, recurring server work and each recurring named part),
    the one-off parts' totals and the run's total, from its timings on its clock (CPU seconds for the
    runs in ``cpu_runs``, else wall seconds); with the recurring and one-off part names.

    A named server part timed in a single round of a longer run (DynaFed's synthesis) is one-off: it is
    reported as its total, and taken out of the round and server means, where averaging it over the
    rounds would make a one-time cost look like a per-round one.
    """
    timings = on_clock(time_rows(suite, runs), cpu_runs)
    if timings.empty:  # runs without timed rounds: every cost but the total is "–"
        return pd.DataFrame(index=pd.Index([], name="run")), [], []
    wide = timings.pivot_table(index=["run", "round"], columns="metric", values="value", aggfunc="sum")
    parts = sorted(m for m in wide.columns if m.startswith("server_") and m.endswith("_seconds")
                   and m != "server_seconds")
    timed = wide.notna().groupby(level="run").sum()
    rounds = wide.groupby(level="run").size()
    one_off = [p for p in parts if is_one_off(timed[p], rounds)]
    recurring = [p for p in parts if p not in one_off]
    once = wide[one_off].fillna(0.0).sum(axis=1) if one_off else pd.Series(0.0, index=wide.index)
    per_run = pd.DataFrame(index=timed.index)
    for metric in ("round_seconds", "client_seconds", "server_seconds"):
        if metric in wide.columns:
            values = wide[metric] - (once if metric != "client_seconds" else 0.0)
            per_run[metric] = values.groupby(level="run").mean()
    for part in recurring:
        per_run[part] = wide[part].groupby(level="run").mean()  # over the rounds in which it ran
    for part in one_off:
        per_run[part] = wide[part].groupby(level="run").sum(min_count=1)
    if "round_seconds" in wide.columns:
        per_run["run_seconds"] = wide["round_seconds"].groupby(level="run").sum(min_count=1)
    # Server work "applies" when the algorithm timed a part of it, or spent at least a millisecond a
    # round on it; otherwise it did nothing beyond averaging, and its cell reads "–", not "0.000".
    applies = (timed[parts].sum(axis=1) > 0) if parts else pd.Series(False, index=timed.index)
    if "server_seconds" in per_run.columns:
        applies = applies | (per_run["server_seconds"] >= 1e-3)
        per_run["server_seconds"] = per_run["server_seconds"].where(applies)
    return per_run, recurring, one_off


def is_one_off(rounds_timed: pd.Series, rounds: pd.Series) -> bool:
    """Whether most runs that timed a part timed it in a single round of several: one-off work. Most, not
    all: a run resumed from a checkpoint redoes (and times) one-off work such as ReGL's generation."""
    timed = rounds_timed[rounds_timed > 0]
    once = [run for run, n in timed.items() if n == 1 and rounds[run] > 1]
    return 2 * len(once) > len(timed)


def cost_table(suite: Suite, variant: str) -> Table:
    """Cost per cell: per-round costs apart from one-off server work, on the CPU clock where every run of
    the cell has it, else on the wall clock."""
    runs = suite.included(variant)
    labels = setting_labels(settings_of(runs))
    clocked = cpu_clocked(time_rows(suite, runs), runs)
    cells = []
    for setting in setting_order(labels):
        in_setting = runs[[setting_of(r) == setting for r in runs.itertuples(index=False)]]
        for row in row_order(rows_of(in_setting)):
            members = list(_cell(runs, row, setting)["run"])
            cells.append((setting, row, members, all(run in clocked for run in members)))
    cpu_runs = {run for *_, members, on_cpu in cells if on_cpu for run in members}
    per_run, recurring, one_off = run_costs(suite, runs, cpu_runs)
    per_round = ["round_seconds", "client_seconds", "server_seconds"] + recurring
    header = (["Setting", "Algorithm", "n", "clock", "round s/round", "client s/round", "server s/round"]
              + [f"{_part(p)} s/round" for p in recurring] + [f"{_part(p)} s once" for p in one_off] + ["total s"])
    frame = runs.set_index("run").join(per_run)
    rows = []
    for setting, row, members, on_cpu in cells:
        cell = frame.loc[members]
        total = cell["run_seconds"] if on_cpu else cell["total_seconds"]  # the summary's wall total needs no timings
        values = [_mean_seconds(cell.get(m)) for m in per_round + one_off] + [_mean_seconds(total)]
        rows.append([Cell(labels[setting]), Cell(row_title(row)), Cell(str(len(cell))), Cell("CPU" if on_cpu else "wall")]
                    + [Cell(v) for v in values])
    caption = ("Seconds, mean over seeds, on the CPU clock (the run process's CPU seconds, summed over its threads) "
               "where every run of the cell ran on a CPU and recorded it, else on the wall clock (column clock). "
               "Wall seconds also count time a run waited for a core that other processes held, or was paused; "
               "CPU seconds count only the work, so compare rows on the same clock. "
               "Per round (s/round): the whole round (evaluation included), the clients' local training, and the "
               "algorithm's extra server work with its recurring named parts (a part's mean over the rounds in "
               "which it ran). One-off server work (s once: a named part timed in a single round, such as DynaFed's "
               "synthesis) is its total, and is left out of the per-round means. total s: the whole run. –: the "
               "cost does not apply (no extra server work beyond averaging, or a part this algorithm does not "
               "have). Timings depend on the machine and its load.")
    return Table("cost_table", "Cost: per round and one-off", caption, header, rows, label_columns=2,
                 empty_text="No finished runs.", notes=[provenance(suite.name, runs).line()])


def _part(metric: str) -> str:
    return metric[len("server_"):-len("_seconds")]


def _mean_seconds(values) -> str:
    if values is None:
        return DASH
    values = pd.Series(values).dropna()
    return f"{values.mean():.2f}" if len(values) else DASH


def mechanism_table(suite: Suite, variant: str) -> Table:
    """Per cell: local steps and client drift (every algorithm), and whether the algorithm's own mechanism
    engaged, as its ``mechanism`` verdict in summary.json says, with the evidence of the lowest seed."""
    runs = suite.included(variant)
    labels = setting_labels(settings_of(runs))
    rows = []
    for setting, row, cell in _cells(runs, labels):
        cell = cell.sort_values(["seed", "run"])
        verdicts = list(cell["mechanism_engaged"])
        # A cell marked NO shows why: the evidence of its lowest failing seed, else of its lowest seed.
        failing = cell[cell["mechanism_engaged"] == "no"]
        evidence = (failing if len(failing) else cell)["mechanism_evidence"].iloc[0] or "not recorded (older run)"
        rows.append([Cell(row_title(row)), Cell(labels[setting]), Cell(_verdict_text(verdicts), bold="no" in verdicts),
                     Cell(evidence), Cell(_mean_text(cell["local_steps"], "{:.1f}")),
                     Cell(_mean_text(cell["drift"], "{:.3g}"))])
    return Table("mechanism", "Mechanism diagnostics: did each method's mechanism engage",
                 "Local steps a round and client drift (mean L2 distance of the clients' trained parameters from "
                 "the global model) are means over rounds and seeds. Engaged: each algorithm's own test on its "
                 "diagnostics, recorded per run (DynaFed: fresh models trained on the synthetic set alone reach "
                 "at least twice chance on validation; FedDF: the ensemble teacher beats the student before "
                 "distillation in most rounds; FedGen: a linear head trained only on the generator's features classifies "
                 "the global model's features of real validation images at twice chance; FedProx: the proximal penalty is at least 1% of the local loss; SCAFFOLD: the "
                 "control-variate correction moves clients by at least 5% of their update after round 1; FedBE: "
                 "as FedDF, with its Bayesian ensemble as teacher; ABAVG: the client weights differ by at least a "
                 "tenth of their mean; FedMix: the shared means' terms are at least 2% of the loss). A cell whose "
                 f"mechanism did not engage is marked {NOT_ENGAGED} in the accuracy tables: its number measures "
                 "something other than the method.",
                 ["Algorithm", "Setting", "Engaged", "Evidence (lowest failing seed, else lowest seed)", "Local steps", "Drift"], rows,
                 label_columns=4, empty_text="No finished runs.", notes=[provenance(suite.name, runs).line()])


def _mean_text(values: pd.Series, fmt: str) -> str:
    values = values.dropna()
    return fmt.format(values.mean()) if len(values) else DASH


def _verdict_text(verdicts: list[str]) -> str:
    if "not recorded" in verdicts:
        return "not recorded"
    if all(v == "n/a" for v in verdicts):
        return "n/a"
    no = verdicts.count("no")
    return "yes" if not no else (f"NO ({no} of {len(verdicts)} seeds)" if len(verdicts) > 1 else "NO")


def settings_table(suite: Suite, variant: str) -> Table:
    """Per cell: its seeds, the algorithm's hyperparameters and the executor that trained the clients, as
    the runs' summaries recorded them."""
    runs = suite.included(variant)
    labels = setting_labels(settings_of(runs))
    rows = []
    for setting, row, cell in _cells(runs, labels):
        executors = sorted({e if not f else f"{e} (fell back: {f})" for e, f in
                            zip(cell["executor"], cell["executor_fallback"])})
        rows.append([Cell(row_title(row)), Cell(labels[setting]),
                     Cell(", ".join(str(s) for s in sorted(set(cell["seed"].dropna().astype(int))))),
                     Cell(" | ".join(sorted(set(cell["hyperparameters"]))) or DASH), Cell(" | ".join(executors))])
    return Table("cell_settings", "Hyperparameters and executor per cell",
                 "Each cell's algorithm hyperparameters (as run, from summary.json) and the client executor that "
                 "trained it (a vectorised run that fell back to sequential says so). Runs of one cell agree on every "
                 "setting but the seed (see Configurations).",
                 ["Algorithm", "Setting", "Seeds", "Hyperparameters", "Executor"], rows, label_columns=5,
                 empty_text="No finished runs.", notes=[provenance(suite.name, runs).line()])


def variants_table(suite: Suite) -> Table:
    """Every configuration of the suite's runs, with the shared settings in which it differs from A."""
    main = suite.main
    rows = []
    for variant in suite.variants:
        runs = suite.included(variant)
        both = pd.concat([runs, suite.diverged(variant)])
        differ = "; ".join(differences(suite.runs, variant, main)) if variant != main else "the reference"
        rows.append([Cell(variant), Cell(str(len(runs))),
                     Cell(", ".join(dict.fromkeys(row_title(r) for r in row_order(rows_of(both))))),
                     Cell(", ".join(setting_labels(settings_of(both)).values())), Cell(differ)])
    return Table("configurations", "Configurations",
                 "Runs that differ in any setting but the table's axes (algorithm, dataset, heterogeneity level) "
                 "and the seed are never averaged or ranked together: each configuration has its own table. A is "
                 "the configuration with the most runs; the others list the settings in which they differ from it. "
                 "Rows or columns labelled with settings (\"FedProx (mu=0.1)\") split runs whose hyperparameters or "
                 "dataset settings differ within one dataset.",
                 ["Configuration", "Runs", "Algorithms", "Settings", "Differs from A in"], rows, label_columns=5,
                 empty_text="No finished runs.", notes=[provenance(suite.name, suite.included()).line()])


def excluded_table(suite: Suite) -> Table:
    excluded = suite.excluded()
    known = excluded[(excluded["dataset"] != "") & excluded["level"].notna() & (excluded["scheme"] != "")]
    labels = setting_labels(settings_of(known))
    rows = []
    for run in excluded.itertuples(index=False):
        setting = setting_of(run) if run.dataset and run.scheme and not math.isnan(run.level) else None
        rows.append([Cell(run.run), Cell(row_title((run.algorithm, "")) if run.algorithm else "?"),
                     Cell(labels[setting] if setting in labels else "?"), Cell(run.excluded)])
    return Table("excluded_runs", "Excluded runs", "Run folders left out of every table and figure, with why.",
                 ["Run folder", "Algorithm", "Setting", "Reason"], rows, label_columns=4,
                 empty_text="No runs were excluded.")


def _cells(runs: pd.DataFrame, labels: dict):
    """(setting, row, runs of the cell) in report order."""
    settings = settings_of(runs)
    for setting in setting_order(labels):
        in_setting = runs[[s == setting for s in settings]]
        for row in row_order(rows_of(in_setting)):
            yield setting, row, _cell(in_setting, row, setting)


def _cell(runs: pd.DataFrame, row, setting) -> pd.DataFrame:
    mask = ((runs["algorithm"] == row[0]) & (runs["row_label"] == row[1]) & (runs["dataset"] == setting.dataset)
            & (runs["scheme"] == setting.scheme) & (runs["level"] == setting.level)
            & (runs["column_label"] == setting.extra))
    return runs[mask]


def _cell_key(run) -> tuple:
    return (run["algorithm"], run["row_label"]), setting_of(run)



def deviations_table(suite: Suite) -> Table:
    """The algorithm hyperparameters the suite sets away from the official code's values, with the reason
    its file gives for each (the suite folder's deviations.csv)."""
    rows = [[Cell(r["algorithm"]), Cell(r["setting"]), Cell(r["ours"]), Cell(r["official"]),
             Cell(r["why"])] for r in suite.deviations or []]
    return Table("deviations", "Deviations from the official hyperparameters",
                 "Each algorithm hyperparameter this suite sets away from the official code's value (per dataset "
                 "where they differ), and why, as the suite file's [deviations] table states it: an ablation "
                 "scored on the validation split, or a budget cut. A suite file with that table must list every "
                 "deviation of its cells; the suite does not load otherwise.",
                 ["Algorithm", "Setting", "Ours", "Official", "Why (suite file)"], rows, label_columns=5,
                 empty_text="None: every algorithm hyperparameter of this suite is the official code's value "
                            "(run settings, such as clients, rounds or the data split, are outside this table).",
                 latex_columns="llp{0.14\\linewidth}p{0.1\\linewidth}p{0.42\\linewidth}")


def deviations_note(suite: Suite) -> list[str]:
    """One footnote naming every deviation of the suite (empty when it has none or did not record them)."""
    by_algorithm: dict[str, list[str]] = {}
    for r in suite.deviations or []:
        by_algorithm.setdefault(r["algorithm"], []).append(f"{r['setting']} {r['ours']} (official {r['official']})")
    if not by_algorithm:
        return []
    listed = "; ".join(f"{a}: {', '.join(items)}" for a, items in by_algorithm.items())
    return [f"Hyperparameters away from the official code's: {listed}. The deviations table gives the reason for "
            "each."]
