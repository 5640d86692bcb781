"""The report's tables of our own runs: accuracy (final and best-validation), cost, exclusions.

Cells are mean ± sample standard deviation over seeds with a fixed two-decimal format, so a table
rebuilt from the same results is byte-identical. A cell that lacks seeds, or lost some to
divergence, says so in the cell rather than hiding it in the average.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from reports.load import Run, Setting, SuiteRuns, is_finite
from reports.names import algorithm_order, algorithm_title, setting_labels, setting_order
from reports.render import Cell, Table


@dataclass(frozen=True)
class Stats:
    values: tuple[float, ...]
    diverged: int = 0
    unavailable: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    def text(self, digits: int = 2) -> str:
        if self.n >= 2:
            return f"{self.mean:.{digits}f} ± {statistics.stdev(self.values):.{digits}f}"
        return f"{self.mean:.{digits}f}"


def accuracy_table(suite: SuiteRuns, value, stem: str, title: str, caption: str) -> Table:
    """Algorithms x settings; ``value(run)`` gives a run's accuracy as a fraction, or None when the
    run cannot provide it (no validation split)."""
    settings = setting_order([r.setting for r in suite.runs] + [e.setting for e in _diverged(suite)])
    algorithms = algorithm_order([r.algorithm for r in suite.runs] + [e.algorithm for e in _diverged(suite)])
    grid = {(a, s): _accuracy_stats(suite, a, s, value) for a in algorithms for s in settings}
    most = max((st.n for st in grid.values()), default=0)
    best = {s: max((round(grid[a, s].mean, 2) for a in algorithms if grid[a, s].n), default=None)
            for s in settings}
    labels = setting_labels(settings)
    rows = [[Cell(algorithm_title(a))] + [_flag(_accuracy_cell(grid[a, s], most, best[s]), suite, a, s)
                                          for s in settings] for a in algorithms]
    flagged = any(not_engaged(suite, a, s) for a in algorithms for s in settings)
    seeds = f"{most} seed{'s' if most != 1 else ''} per cell unless n is shown"
    return Table(stem, title, f"{caption} Mean ± sample standard deviation over seeds ({seeds}; one seed "
                 "has no ±). Bold: best mean in its column. Unfinished, diverged and older-format runs are "
                 "never averaged in: see Excluded runs.",
                 ["Algorithm"] + [labels[s] for s in settings], rows, empty_text="No finished runs.",
                 notes=[f"{NOT_ENGAGED} The method's mechanism did not engage in at least one seed of this cell "
                        "(see the mechanism table)."] if flagged else [])


def _flag(cell: Cell, suite: SuiteRuns, algorithm: str, setting: Setting) -> Cell:
    return Cell(cell.text + NOT_ENGAGED, cell.bold) if not_engaged(suite, algorithm, setting) else cell


def main_table(suite: SuiteRuns) -> Table:
    rounds = sorted({r.summary["final"]["round"] for r in suite.runs})
    when = f"after {rounds[0]} rounds" if len(rounds) == 1 else "at each run's last evaluated round"
    return accuracy_table(suite, lambda r: r.summary["final"]["test_accuracy"], "main_table",
                          "Final test accuracy (%)", f"Test accuracy of the final global model {when}.")


def best_val_table(suite: SuiteRuns) -> Table:
    return accuracy_table(suite, lambda r: (r.summary["best_val"] or {}).get("test_accuracy"), "best_val_table",
                          "Test accuracy (%) at the best validation round",
                          "Test accuracy at the round where validation accuracy peaked: the round is selected "
                          "on the validation split, never on the best test round.")


def cost_table(suite: SuiteRuns) -> Table:
    """Wall-clock cost per algorithm and setting: client work, extra server work and its named parts."""
    parts = sorted({m for r in suite.runs for m in r.seconds_per_round
                    if m.startswith("server_") and m != "server_seconds"})
    header = ["Setting", "Algorithm", "Seeds", "round s/round", "client s/round", "server s/round"]
    header += [f"server {m[len('server_'):-len('_seconds')]} s/round" for m in parts] + ["total s"]
    labels = setting_labels(r.setting for r in suite.runs)
    rows = []
    for setting in setting_order(labels):
        for algorithm in algorithm_order(r.algorithm for r in suite.runs if r.setting == setting):
            runs = _cell_runs(suite, algorithm, setting)
            per_round = [_mean_of(runs, lambda r, m=m: r.seconds_per_round.get(m))
                         for m in ("round_seconds", "client_seconds", "server_seconds", *parts)]
            total = _mean_of(runs, lambda r: r.summary["timing"]["total_seconds"])
            rows.append([Cell(labels[setting]), Cell(algorithm_title(algorithm)), Cell(str(len(runs)))]
                        + [Cell(v) for v in per_round] + [Cell(total)])
    caption = ("Wall-clock seconds, mean over seeds of each run's mean per round: round is the whole round "
               "(evaluation included), client the local training, server the algorithm's extra server work, "
               "and the named server parts are the algorithm's own breakdown of it; total is the whole run. "
               "Timings depend on the machine and its load.")
    return Table("cost_table", "Cost", caption, header, rows, label_columns=2, empty_text="No finished runs.")


NOT_ENGAGED = "‡"


def mechanism_table(suite: SuiteRuns) -> Table:
    """Per cell: local steps and client drift (every algorithm), and whether the algorithm's own mechanism
    engaged, as its ``mechanism`` verdict in summary.json says, with the evidence of the lowest seed."""
    labels = setting_labels(r.setting for r in suite.runs)
    rows = []
    for setting in setting_order(labels):
        for algorithm in algorithm_order(r.algorithm for r in suite.runs if r.setting == setting):
            runs = sorted(_cell_runs(suite, algorithm, setting), key=lambda r: (r.seed, r.name))
            verdicts = [_mechanism(r).get("engaged", "missing") for r in runs]
            rows.append([Cell(algorithm_title(algorithm)), Cell(labels[setting]),
                         Cell(_verdict_text(verdicts), bold=False in verdicts),
                         Cell(_mechanism(runs[0]).get("evidence", "not recorded (older run)")),
                         Cell(_series_text(runs, "train.local_steps", "{:.1f}")),
                         Cell(_series_text(runs, "train.drift", "{:.3g}"))])
    return Table("mechanism", "Mechanism diagnostics: did each method's mechanism engage",
                 "Local steps a round and client drift (mean L2 distance of the clients' trained parameters from "
                 "the global model) are means over rounds and seeds. Engaged: each algorithm's own test on its "
                 "diagnostics, recorded per run (DynaFed: fresh models trained on the synthetic set alone reach "
                 "at least twice chance on validation; FedDF: the ensemble teacher beats the student before "
                 "distillation in most rounds; FedGen: the clients' heads classify the generator's features at "
                 "twice chance; FedProx: the proximal penalty is at least 1% of the local loss). A cell whose "
                 f"mechanism did not engage is marked {NOT_ENGAGED} in the accuracy tables: its number measures "
                 "something other than the method.",
                 ["Algorithm", "Setting", "Engaged", "Evidence (lowest seed)", "Local steps", "Drift"], rows,
                 label_columns=4, empty_text="No finished runs.")


def _mechanism(run: Run) -> dict:
    return run.summary.get("mechanism") or {}


def _series_text(runs: list[Run], key: str, fmt: str) -> str:
    values = [_mechanism(r).get("series", {}).get(key, {}).get("mean") for r in runs]
    values = [v for v in values if is_finite(v)]
    return fmt.format(statistics.fmean(values)) if values else "–"


def _verdict_text(verdicts: list) -> str:
    if "missing" in verdicts:
        return "not recorded"
    if all(v is None for v in verdicts):
        return "n/a"
    no = sum(v is False for v in verdicts)
    return "yes" if not no else (f"NO ({no} of {len(verdicts)} seeds)" if len(verdicts) > 1 else "NO")


def not_engaged(suite: SuiteRuns, algorithm: str, setting: Setting) -> bool:
    return any(_mechanism(r).get("engaged") is False for r in _cell_runs(suite, algorithm, setting))


def settings_table(suite: SuiteRuns) -> Table:
    """Per cell (algorithm x setting): its seeds, the algorithm's hyperparameters and the executor that
    trained the clients, as the runs' summaries recorded them; a cell whose runs disagree lists each value."""
    labels = setting_labels(r.setting for r in suite.runs)
    rows = []
    for setting in setting_order(labels):
        for algorithm in algorithm_order(r.algorithm for r in suite.runs if r.setting == setting):
            runs = _cell_runs(suite, algorithm, setting)
            hparams = sorted({_hyperparameters(r) for r in runs})
            executors = sorted({_executor(r) for r in runs})
            rows.append([Cell(algorithm_title(algorithm)), Cell(labels[setting]),
                         Cell(", ".join(str(s) for s in sorted({r.seed for r in runs}))),
                         Cell(" | ".join(hparams) or "–"), Cell(" | ".join(executors))])
    return Table("cell_settings", "Hyperparameters and executor per cell",
                 "Each cell's algorithm hyperparameters (as run, from summary.json) and the client executor that "
                 "trained it (a vectorised run that fell back to sequential says so).",
                 ["Algorithm", "Setting", "Seeds", "Hyperparameters", "Executor"], rows, label_columns=5,
                 empty_text="No finished runs.")


def _hyperparameters(run: Run) -> str:
    table = run.summary["config"].get("algorithms", {}).get(run.algorithm, {})
    return ", ".join(f"{key}={value}" for key, value in sorted(table.items()))


def _executor(run: Run) -> str:
    execution = run.summary.get("execution") or {}
    name = execution.get("executor", "not recorded")
    return f"{name} (fell back: {execution['executor_fallback']})" if execution.get("executor_fallback") else name


def excluded_table(suite: SuiteRuns) -> Table:
    labels = setting_labels(e.setting for e in suite.excluded if e.setting)
    rows = [[Cell(e.name), Cell(algorithm_title(e.algorithm) if e.algorithm else "?"),
             Cell(labels[e.setting] if e.setting else "?"), Cell(e.reason)] for e in suite.excluded]
    return Table("excluded_runs", "Excluded runs", "Run folders left out of every table and figure, with why.",
                 ["Run folder", "Algorithm", "Setting", "Reason"], rows, label_columns=4,
                 empty_text="No runs were excluded.")


def _diverged(suite: SuiteRuns):
    return [e for e in suite.excluded if e.diverged and e.setting is not None]


def _cell_runs(suite: SuiteRuns, algorithm: str, setting: Setting) -> list[Run]:
    return [r for r in suite.runs if r.algorithm == algorithm and r.setting == setting]


def _accuracy_stats(suite: SuiteRuns, algorithm: str, setting: Setting, value) -> Stats:
    raw = [value(r) for r in _cell_runs(suite, algorithm, setting)]
    diverged = sum(1 for e in _diverged(suite) if e.algorithm == algorithm and e.setting == setting)
    return Stats(tuple(100.0 * v for v in raw if is_finite(v)), diverged, sum(1 for v in raw if v is None))


def _accuracy_cell(stats: Stats, most: int, best: float | None) -> Cell:
    if not stats.n:
        if stats.diverged:
            return Cell("diverged" if stats.diverged == 1 else f"{stats.diverged} diverged")
        return Cell("no validation split" if stats.unavailable else "–")
    notes = ([f"n={stats.n}"] if stats.n < most else []) + ([f"{stats.diverged} diverged"] if stats.diverged else [])
    text = stats.text() + (f" ({', '.join(notes)})" if notes else "")
    return Cell(text, bold=round(stats.mean, 2) == best)


def _mean_of(runs: list[Run], get) -> str:
    values = [v for v in (get(r) for r in runs) if v is not None]
    return f"{statistics.fmean(values):.3f}" if values else "–"
