"""Build a suite's report folder from ``<results>/<suite>/`` alone: tables, figures and index.html.

Nothing here imports torch or reads the runner's code paths: a report must be buildable on any
machine that has only the results folder, and must never change a result.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from reports.figures import curves_figure, curves_grid_figure, partition_figure
from reports.html import Image, Section, figures_section, page, table_section, text_files_section
from reports.load import Run, SuiteRuns, load_suite
from reports.names import algorithm_order, algorithm_title, setting_labels, setting_order, setting_slug
from reports.paper import paper_table
from reports.render import Table, to_latex, to_markdown
from reports.tables import (best_val_table, cost_table, excluded_table, main_table, mechanism_table,
                            settings_table)
from reports.tuning import tuned_overrides

SYNTHETIC_ARTIFACT = "dynafed_synthetic.png"


class ReportError(RuntimeError):
    """The report cannot be built; the message is one line saying why."""


def build_report(suite: str, results: Path, out: Path) -> list[Path]:
    """Write the report of ``suite`` into ``out``; returns the files written, index.html last."""
    suite_dir = Path(results) / suite
    if not suite_dir.is_dir():
        raise ReportError(f"reports: no results for suite {suite!r}: {suite_dir} is not a folder "
                          f"(run `python -m benchmarks sweep {suite}` first, or pass --results)")
    runs = load_suite(suite_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sections = []
    for anchor, table in (("main", main_table(runs)), ("mechanism", mechanism_table(runs)),
                          ("best-val", best_val_table(runs)),
                          ("paper", paper_table(runs)), ("cost", cost_table(runs)),
                          ("cell-settings", settings_table(runs))):
        files = _write_table(table, out)
        written += files
        sections.append(table_section(anchor, table, [f.name for f in files]))
    curves, partitions, synthetic = _curves(runs, out), _partitions(runs, out), _synthetic(runs, suite_dir, out)
    written += [out / f for image in curves + partitions + synthetic for f in image.files]
    sections += [figures_section("curves", "Test accuracy per round", "Lines: mean over seeds; bands: min to "
                                 "max over seeds. Each algorithm has its own colour, line style and marker.", curves),
                 figures_section("partitions", "Client data partitions", "Samples per class (rows) held by each "
                                 "client (columns), for one seed's partition of each setting.", partitions)]
    if synthetic:
        sections.append(figures_section("synthetic", "DynaFed synthetic data", "The synthetic images DynaFed "
                                        "distilled from the global model trajectory.", synthetic))
    sections += _tuning_section(Path(results))
    excluded = excluded_table(runs)
    written += _write_table(excluded, out, latex=False)
    sections.append(table_section("excluded", excluded, [f"{excluded.stem}.md"]))
    index = out / "index.html"
    index.write_text(page(f"hetbench report: suite {suite}", _intro(suite, runs), sections), encoding="utf-8")
    return written + [index]


def _intro(suite: str, runs: SuiteRuns) -> str:
    return (f"Built from results/{suite}/ only: {len(runs.runs)} finished run(s) are included and "
            f"{len(runs.excluded)} excluded (listed at the end, with reasons).")


def _write_table(table: Table, out: Path, latex: bool = True) -> list[Path]:
    files = [(out / f"{table.stem}.md", to_markdown(table))]
    if latex:
        files.append((out / f"{table.stem}.tex", to_latex(table)))
    for path, text in files:
        path.write_text(text, encoding="utf-8")
    return [path for path, _ in files]


def _by_setting(runs: SuiteRuns):
    labels = setting_labels(r.setting for r in runs.runs)
    return [(s, labels[s], [r for r in runs.runs if r.setting == s]) for s in setting_order(labels)]


def _curves(runs: SuiteRuns, out: Path) -> list[Image]:
    """One figure per setting and, when there are several, all of them on one page (datasets as rows)."""
    order = algorithm_order(r.algorithm for r in runs.runs)
    images, panels = [], []
    settings = _by_setting(runs)
    datasets = list(dict.fromkeys(s.dataset for s, _, _ in settings))
    for setting, label, cell_runs in settings:
        lines = [(order.index(a), algorithm_title(a), [r for r in cell_runs if r.algorithm == a])
                 for a in algorithm_order(r.algorithm for r in cell_runs)]
        files = curves_figure(lines, label, out / "figures" / f"curves_{setting_slug(setting)}")
        images.append(_image(files, out, f"Test accuracy per round, {label}",
                             f"Test accuracy (%) per round, {label}."))
        row = datasets.index(setting.dataset)
        panels.append((row, sum(p[0] == row for p in panels), label, lines))
    if len(panels) > 1:
        files = curves_grid_figure(panels, out / "figures" / "curves_all")
        images.insert(0, _image(files, out, "Test accuracy per round, every setting",
                                "Test accuracy (%) per round in every setting (mean over seeds; one row per "
                                "dataset)."))
    return images


def _partitions(runs: SuiteRuns, out: Path) -> list[Image]:
    images = []
    for setting, label, cell_runs in _by_setting(runs):
        run = min(cell_runs, key=_partition_seed_key)
        seed = run.summary["config"]["partition"].get("seed", run.seed)
        part = run.summary["partition"]
        files = partition_figure(part["class_counts"], f"{label}, partition seed {seed}",
                                 out / "figures" / f"partition_{setting_slug(setting)}")
        spread = (f" Heterogeneity ({part['heterogeneity_metric']}): {part['heterogeneity']:.3f}."
                  if "heterogeneity" in part and "heterogeneity_metric" in part else "")
        seeds = sorted({r.seed for r in cell_runs})
        images.append(_image(files, out, f"Partition, {label}",
                             f"{label}: the partition of seed {seed} (from run {run.name}); the setting was run "
                             f"with seed(s) {', '.join(map(str, seeds))}.{spread}"))
    return images


def _partition_seed_key(run: Run):
    return run.summary["config"]["partition"].get("seed", run.seed), run.seed, run.name


def _synthetic(runs: SuiteRuns, suite_dir: Path, out: Path) -> list[Image]:
    """DynaFed's image grid, one per setting (from its lowest seed), copied into the report."""
    images = []
    for setting, label, cell_runs in _by_setting(runs):
        having = sorted((r for r in cell_runs if SYNTHETIC_ARTIFACT in r.summary["artifacts"]
                         and (suite_dir / r.name / SYNTHETIC_ARTIFACT).is_file()), key=lambda r: (r.seed, r.name))
        if not having:
            continue
        target = out / "figures" / f"dynafed_synthetic_{setting_slug(setting)}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(suite_dir / having[0].name / SYNTHETIC_ARTIFACT, target)
        images.append(_image([target], out, f"DynaFed synthetic images, {label}",
                             f"{label}: synthetic images of run {having[0].name}."))
    return images


def _tuning_section(results: Path) -> list[Section]:
    tuned = tuned_overrides(results)
    if not tuned:
        return []
    return [text_files_section("tuned", "Tuned hyperparameters", "Override files written by the tuner "
                               "(scored on the validation split), shown verbatim.", tuned)]


def _image(files: list[Path], out: Path, alt: str, caption: str) -> Image:
    rel = [f.relative_to(out).as_posix() for f in files]
    shown = next((f for f in rel if f.endswith(".svg")), rel[0])
    return Image(shown, tuple(rel), alt, caption)
