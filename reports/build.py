"""Build a suite's report folder: tables, figures, tidy CSVs and index.html.

The source is either the suite's run folders (``build_report``), optionally joined with the runs an
earlier report published (its CSVs), or the CSVs an earlier report wrote (``build_from_csv``); all give the
same bytes for the same runs. Nothing here imports torch or reads the runner's code
paths: a report must be buildable on any machine that has only the results (or the CSVs), and must
never change a result.
"""
from __future__ import annotations

import math
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reports.errors import ReportError
from reports.figures import Panel, Series, curves_figure, curves_grid, limits, partition_figure
from reports.frames import Suite, rows_of, setting_of, settings_of
from reports.html import (Image, Section, definition_section, figures_section, page, png_size, table_section,
                          tables_section, text_files_section)
from reports.load import load_results
from reports.names import Setting, remember_titles, row_order, row_title, setting_labels, setting_order, setting_slug
from reports.paper import gain_table, load_reference, paper_table, paper_value
from reports.provenance import provenance
from reports.published import with_published
from reports.render import Table, to_latex, to_markdown
from reports.tables import (best_val_table, cost_table, cpu_clocked, deviations_table, eval_split, excluded_table,
                            main_table, mechanism_table, on_clock, settings_table, time_rows, variants_table)
from reports.tidy import CURVES_CSV, FIGURES_DIR, PARTITIONS_CSV, RUNS_CSV, load_csvs, synthetic_name, write_csvs
from reports.trust import assign, differences

__all__ = ["ReportError", "build_report", "build_from_csv"]
# Above this many seconds the time axis is in minutes.
MINUTES_FROM = 600.0


def build_report(suite: str, results: Path, out: Path, published: Path | None = None) -> list[Path]:
    """Write the report of ``suite`` from ``<results>/<suite>/`` into ``out``; returns the files written,
    index.html last. With ``published`` (an earlier report folder of the suite), the runs it includes that
    have no folder under the results are taken from its CSVs (``reports.published``)."""
    suite_dir = Path(results) / suite
    if not suite_dir.is_dir() and published is None:
        raise ReportError(f"reports: no results for suite {suite!r}: {suite_dir} is not a folder "
                          f"(run `python -m benchmarks sweep {suite}` first, or pass --results or --from-csv)")
    earlier = load_csvs(suite, published, "--published") if published is not None else None
    # Every cell may be published: then there are no folders yet, and the earlier report is all there is.
    data = load_results(suite, suite_dir, Path(results))
    if earlier is not None:
        data, carried = with_published(data, earlier)
        print(f"reports: {len(carried)} runs taken from {Path(published) / RUNS_CSV} (no folder under "
              f"{suite_dir})", file=sys.stderr)
    _check_out(out)
    return write_report(data, out)


def build_from_csv(suite: str, directory: Path, out: Path) -> list[Path]:
    """Write the report of ``suite`` from the runs.csv and curves.csv in ``directory`` into ``out``."""
    data = load_csvs(suite, directory)  # first: bad CSVs must not leave an empty report folder behind
    _check_out(out)
    return write_report(data, out)


def write_report(data: Suite, out: Path) -> list[Path]:
    data.runs = assign(data.runs)
    remember_titles([("algorithm", r.algorithm, r.algorithm_title) for r in data.runs.itertuples(index=False)]
                    + [("dataset", r.dataset, r.dataset_title) for r in data.runs.itertuples(index=False)])
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    main = data.main
    sections = [_provenance_section(data)]
    if main is not None:
        # Without a test evaluation there is no best-validation test number, and nothing to set beside
        # the paper's test accuracies.
        tested = eval_split(data.included(main)) == "test"
        tables = [("main", main_table(data, main))]
        tables += [("gain", gain_table(data, main)), ("best-val", best_val_table(data, main)),
                   ("paper", paper_table(data, main))] if tested else []
        tables += [("mechanism", mechanism_table(data, main))]
        tables += [("deviations", deviations_table(data))] if data.deviations is not None else []
        tables += [("cost", cost_table(data, main)), ("cell-settings", settings_table(data, main))]
        for anchor, table in tables:
            files = _write_table(table, out)
            written += files
            sections.append(table_section(anchor, table, [f.name for f in files]))
    if len(data.variants) > 1:
        section, files = _variants_section(data, out)
        sections.append(section)
        written += files
    if main is not None:
        for section, images in _figure_sections(data, main, out):
            sections.append(section)
            written += [out / f for image in images for f in image.files]
    tuned = _tuned(data, out)
    written += [out / link for _, link, _ in tuned]
    if tuned:
        sections.append(text_files_section("tuned", "Tuned hyperparameters", "Override files written by the tuner "
                                           "(scored on the validation split), shown verbatim.", tuned))
    excluded = excluded_table(data)
    written += _write_table(excluded, out, latex=False)
    sections.append(table_section("excluded", excluded, [f"{excluded.stem}.md"]))
    drawn = [run for run, _ in _partition_runs(data, main)] if main is not None else []
    written += write_csvs(data, out, drawn)
    index = out / "index.html"
    index.write_text(page(f"hetbench report: suite {data.name}", _intro(data), sections), encoding="utf-8")
    _prune_figures(out, written)
    return written + [index]


def _prune_figures(out: Path, written: list[Path]) -> None:
    """Delete what an earlier build left in ``figures/`` and this one did not write (a rerun suite's
    synthetic grids under their old run ids, say): the report owns that folder, and a committed report
    should hold only what its page shows."""
    kept = {p.resolve() for p in written}
    figures = out / FIGURES_DIR
    for path in sorted(figures.rglob("*"), reverse=True) if figures.is_dir() else []:
        if path.is_file() and path.resolve() not in kept:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _check_out(out: Path) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"reports: --out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"reports: cannot create the report folder {out}: {exc.strerror or exc}") from None


def _intro(data: Suite) -> str:
    included, excluded, variants = len(data.included()), len(data.excluded()), data.variants
    text = (f"Every number on this page comes from the runs of suite {data.name} listed in {RUNS_CSV} and "
            f"{CURVES_CSV} beside it: {included} finished run(s) are included and {excluded} run folder(s) excluded "
            "(listed at the end, with reasons).")
    if len(variants) > 1:
        text += (f" The runs form {len(variants)} configurations, which are never averaged together: the tables and "
                 f"figures show configuration {variants[0]}, the one with the most runs; the others have their own "
                 "tables under Configurations.")
    return text


def _provenance_section(data: Suite) -> Section:
    runs = data.included()
    return definition_section("provenance", "Provenance",
                              "Where the numbers come from, as the runs recorded it (the dates are the runs', so "
                              "a rebuild of the same runs gives the same page).",
                              provenance(data.name, runs).rows(), [RUNS_CSV, CURVES_CSV, PARTITIONS_CSV])


def _write_table(table: Table, out: Path, latex: bool = True) -> list[Path]:
    files = [(out / f"{table.stem}.md", to_markdown(table))]
    if latex:
        files.append((out / f"{table.stem}.tex", to_latex(table)))
    for path, text in files:
        path.write_text(text, encoding="utf-8")
    return [path for path, _ in files]


def _variants_section(data: Suite, out: Path) -> tuple[Section, list[Path]]:
    overview = variants_table(data)
    tables = [(overview, _write_table(overview, out))]
    for variant in data.variants[1:]:
        differ = "; ".join(differences(data.runs, variant, data.main))
        table = main_table(data, variant, stem=f"main_table_{variant}",
                           title=None,
                           extra_caption=f" Configuration {variant} differs from A in {differ}.")
        tables.append((table, _write_table(table, out)))
    section = tables_section("configurations", "Configurations", "Runs that differ in a setting besides the axes "
                             "and the seed, each configuration in its own table.",
                             [(t, [f.name for f in files]) for t, files in tables])
    return section, [f for _, files in tables for f in files]


# --- figures -------------------------------------------------------------------------------------------

def _figure_sections(data: Suite, variant: str, out: Path) -> list[tuple[Section, list[Image]]]:
    runs = data.included(variant)
    settings = setting_order(settings_of(runs))
    if not settings:
        return []
    labels = setting_labels(settings)
    styles = {row: i for i, row in enumerate(row_order(rows_of(runs)))}
    reference = load_reference()
    curves = data.curves[data.curves["run"].isin(runs["run"])]
    split = eval_split(runs)
    split_name = {"test": "test", "val": "validation"}[split]
    title = split_name.capitalize()
    accuracy = _points(curves, split, "accuracy", scale=100.0)
    loss = _points(curves, split, "loss")
    # One clock for the whole figure: CPU seconds (which a paused run or one waiting for a core does not
    # accrue) when every run has them, else wall seconds.
    timings = time_rows(data, runs)
    on_cpu = set(runs["run"]) <= cpu_clocked(timings, runs)
    clock = "CPU time" if on_cpu else "wall-clock time"
    timed, unit = _timed(on_clock(timings, set(runs["run"]) if on_cpu else set()), accuracy)
    datasets = list(dict.fromkeys(s.dataset for s in settings))
    position = {s: (datasets.index(s.dataset), [t for t in settings if t.dataset == s.dataset].index(s))
                for s in settings}

    def panels(points, chance, paper) -> list[Panel]:
        out_panels = []
        for s in settings:
            cell_runs = runs[[setting_of(r) == s for r in runs.itertuples(index=False)]]
            series = []
            for row in row_order(rows_of(cell_runs)):
                names = cell_runs[(cell_runs["algorithm"] == row[0]) & (cell_runs["row_label"] == row[1])]["run"]
                mark = paper_value(reference, row[0], s) if paper else None
                series.append(Series(styles[row], row_title(row), points[points["run"].isin(names)],
                                     mark[0] if mark else None))
            classes = cell_runs["num_classes"].dropna()
            level = chance(int(classes.iloc[0])) if len(classes) else None
            out_panels.append(Panel(*position[s], labels[s], series, level))
        return out_panels

    accuracy_panels = panels(accuracy, lambda k: 100.0 / k, paper=split == "test")
    sections = []
    curve_images = []
    if len(settings) > 1:
        files = curves_grid(accuracy_panels, out / FIGURES_DIR / "curves_all", xlabel="round",
                            ylabel=f"{split_name} accuracy (%)",
                            chance_label="chance (1/classes)")
        curve_images.append(_image(files, out, f"{title} accuracy per round, every setting",
                                   f"{title} accuracy (%) per round in every setting, one row per dataset on a shared "
                                   "y-axis: mean over seeds, band from the lowest to the highest seed; "
                                   + ("filled markers right of the curves: the paper's final accuracy; "
                                      if split == "test" else "") + "dotted: chance."))
    ylims = {d: limits([p for p, s in zip(accuracy_panels, settings) if s.dataset == d]) for d in datasets}
    for panel, s in zip(accuracy_panels, settings):
        files = curves_figure(panel, out / FIGURES_DIR / f"curves_{setting_slug(s)}", xlabel="round",
                              ylabel=f"{split_name} accuracy (%)", ylim=ylims[s.dataset],
                              chance_label="chance (1/classes)")
        curve_images.append(_image(files, out, f"{title} accuracy per round, {labels[s]}",
                                   f"{title} accuracy (%) per round, {labels[s]} (y-axis shared with the dataset's "
                                   "other settings).", half=True))
    sections.append((figures_section("curves", f"{title} accuracy per round", "Each method has its own colour, line "
                                     "style and hollow marker; lines are drawn widest first, so a method hidden under "
                                     "another shows as its outline. Ticks fall on evaluated rounds.", curve_images),
                     curve_images))
    more = []
    loss_panels = panels(loss, math.log, paper=False)
    if any(len(s.points) for p in loss_panels for s in p.series):
        files = curves_grid(loss_panels, out / FIGURES_DIR / "loss_all", xlabel="round", ylabel=f"{split_name} loss",
                            chance_label="uniform prediction (ln classes)")
        more.append(_image(files, out, f"{title} loss per round, every setting",
                           f"{title} loss (mean cross-entropy) per round, one row per dataset on a shared y-axis; "
                           "dotted: the loss of a uniform prediction."))
    time_panels = panels(timed, lambda k: 100.0 / k, paper=False)
    if any(len(s.points) for p in time_panels for s in p.series):
        files = curves_grid(time_panels, out / FIGURES_DIR / "accuracy_time", xlabel=f"{clock} ({unit})",
                            ylabel=f"{split_name} accuracy (%)", rounds_axis=False, chance_label="chance (1/classes)")
        more.append(_image(files, out, f"{title} accuracy against {clock}, every setting",
                           f"{title} accuracy (%) against the run's cumulative {clock} ({unit}, mean over "
                           "seeds at each evaluated round): what each method's accuracy costs. One-off server work "
                           "(DynaFed's synthesis) shows as a horizontal jump. "
                           + ("CPU seconds leave out time a run spent paused or waiting for a core; they depend on "
                              "the machine." if on_cpu else "Wall-clock timings depend on the machine and its load; "
                              "some runs lack CPU seconds, so the whole figure uses the wall clock.")))
    if more:
        sections.append((figures_section("loss-time", "Loss and cost curves", f"{title} loss per round, and accuracy "
                                         f"against {clock}.", more), more))
    partitions = _partition_images(data, variant, out)
    sections.append((figures_section("partitions", "Client data partitions", "Samples per class (rows) held by "
                                     "each client (columns), for one seed's partition of each setting.", partitions),
                     partitions))
    synthetic = _synthetic_images(data, variant, out)
    if synthetic:
        sections.append((figures_section("synthetic", "DynaFed synthetic data", "The synthetic images DynaFed "
                                         "distilled from the global model trajectory, one row per class slot (a tall "
                                         "grid scrolls in its box; its file link opens it whole).", synthetic),
                         synthetic))
    return sections


def _points(curves: pd.DataFrame, split: str, metric: str, scale: float = 1.0) -> pd.DataFrame:
    rows = curves[(curves["split"] == split) & (curves["metric"] == metric)]
    return pd.DataFrame({"run": rows["run"], "round": rows["round"].astype("int64"),
                         "x": rows["round"].astype("float64"), "y": scale * rows["value"]})


def _timed(timings: pd.DataFrame, accuracy: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Accuracy points with x = the run's cumulative seconds (or minutes) at that round, on the clock
    ``timings`` are on (``tables.on_clock``)."""
    seconds = timings[timings["metric"] == "round_seconds"]
    seconds = seconds.sort_values(["run", "round"])
    elapsed = seconds.assign(x=seconds.groupby("run")["value"].cumsum())[["run", "round", "x"]]
    start = pd.DataFrame({"run": accuracy["run"].unique(), "round": 0, "x": 0.0})
    elapsed = pd.concat([start, elapsed[elapsed["round"] != 0]], ignore_index=True)
    points = accuracy.drop(columns="x").merge(elapsed, on=["run", "round"], how="inner")
    unit = "s"
    if len(points) and points["x"].max() > MINUTES_FROM:
        points["x"] = points["x"] / 60.0
        unit = "min"
    return points[["run", "round", "x", "y"]], unit


def _partition_runs(data: Suite, variant: str) -> list[tuple[str, Setting]]:
    """Per setting, the run whose partition is drawn: the lowest partition seed (then seed, then name)."""
    runs = data.included(variant)
    chosen = []
    for s in setting_order(settings_of(runs)):
        cell = runs[[setting_of(r) == s for r in runs.itertuples(index=False)]]
        cell = cell.sort_values(["partition_seed", "seed", "run"])
        chosen.append((cell["run"].iloc[0], s))
    return chosen


def _partition_images(data: Suite, variant: str, out: Path) -> list[Image]:
    runs = data.included(variant).set_index("run")
    labels = setting_labels(settings_of(data.included(variant)))
    images = []
    for name, s in _partition_runs(data, variant):
        run = runs.loc[name]
        parts = data.partitions[data.partitions["run"] == name]
        if parts.empty or pd.isna(run["clients"]) or pd.isna(run["num_classes"]):
            continue
        counts = np.zeros((int(run["clients"]), int(run["num_classes"])), dtype=np.int64)
        clients, classes = parts["client"].to_numpy(dtype=int), parts["class"].to_numpy(dtype=int)
        counts[clients, classes] = parts["count"].to_numpy(dtype=int)
        seed = int(run["partition_seed"])
        files = partition_figure(counts, f"{labels[s]}, partition seed {seed}",
                                 out / FIGURES_DIR / f"partition_{setting_slug(s)}")
        spread = (f" Heterogeneity ({run['heterogeneity_metric']}): {run['heterogeneity']:.3f}."
                  if run["heterogeneity_metric"] and not pd.isna(run["heterogeneity"]) else "")
        cell = data.included(variant)
        seeds = sorted({int(r.seed) for r in cell.itertuples(index=False) if setting_of(r) == s})
        images.append(_image(files, out, f"Partition, {labels[s]}",
                             f"{labels[s]}: the partition of seed {seed} (from run {name}); the setting was run with "
                             f"seed(s) {', '.join(map(str, seeds))}.{spread}", half=True))
    return images


def _synthetic_images(data: Suite, variant: str, out: Path) -> list[Image]:
    """DynaFed's image grid, one per setting (from its lowest seed), copied into the report."""
    runs = data.included(variant)
    labels = setting_labels(settings_of(runs))
    images = []
    for s in setting_order(labels):
        cell = runs[[setting_of(r) == s and r.run in data.images for r in runs.itertuples(index=False)]]
        if cell.empty:
            continue
        name = cell.sort_values(["seed", "run"])["run"].iloc[0]
        target = out / synthetic_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        source = data.images[name]
        if source.resolve() != target.resolve():  # rebuilding a report in place from its own CSVs
            shutil.copyfile(source, target)
        images.append(_image([target], out, f"DynaFed synthetic images, {labels[s]}",
                             f"{labels[s]}: synthetic images of run {name}.", size=png_size(target)))
    return images


def _tuned(data: Suite, out: Path) -> list[tuple[str, str, str]]:
    """The tuner's files, copied into the report (so that a rebuild from it finds them): (name, link, text)."""
    shown = []
    for rel, text in data.tuned:
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
        shown.append((rel, rel, text))
    return shown


def _image(files: list[Path], out: Path, alt: str, caption: str, size=None, half: bool = False) -> Image:
    rel = [f.relative_to(out).as_posix() for f in files]
    shown = next((f for f in rel if f.endswith(".svg")), rel[0])
    return Image(shown, tuple(rel), alt, caption, size=size, half=half)
