"""Figures of a report: accuracy, loss and accuracy-vs-time curves, partition heatmaps; PNG and SVG.

What each figure must let a reader see:
- every method, even where two coincide (FedProx on FedAvg): each has an Okabe-Ito colour, a line
  style and a hollow marker of its own, and lines are drawn widest first, so a line drawn later on top
  of an equal one leaves the earlier one's edges showing; dense markers are staggered per method;
- the rounds that were evaluated: ticks fall on them (a subset when there are many, always the last);
- the seeds' spread (a band from the lowest to the highest seed), and how far from chance and from
  the paper's final accuracy (a filled marker right of the curves) each method is;
- settings of one dataset on one y-scale (shared per grid row, and equal limits in the per-setting
  figures), so a height means the same accuracy in every panel of a dataset.
Every file must be byte-identical when rebuilt, so timestamps and software tags are stripped, SVG ids
are salted with a constant, and fonts and resolution are fixed. Figures are bare ``Figure`` objects:
no pyplot global state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

# Okabe & Ito (2008), reordered so that the first colours keep their contrast in grey-scale print.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
DPI = 150
RC = {"svg.hashsalt": "hetbench-report", "svg.fonttype": "path", "font.family": "DejaVu Sans",
      "font.size": 9, "savefig.dpi": DPI, "figure.dpi": DPI}
MAX_TICKS = 11
MAX_MARKERS = 10
CHANCE = {"color": "0.45", "linestyle": (0, (1, 2)), "linewidth": 1.0}


def line_style(index: int) -> dict:
    """The index-th method's look; (line style, marker) pairs stay distinct for 18 methods."""
    return {"color": OKABE_ITO[index % len(OKABE_ITO)], "linestyle": LINE_STYLES[index % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)]}


def line_width(index: int, base: float = 2.6) -> float:
    """Widest first: a later, narrower line drawn over an identical earlier one leaves its edges visible."""
    return max(0.9, base - 0.22 * index)


@dataclass
class Series:
    """One method in one panel: ``points`` has columns run, round, x, y (one row per run and point)."""
    style: int
    label: str
    points: pd.DataFrame
    paper: float | None = None


@dataclass
class Panel:
    row: int
    col: int
    title: str
    series: list[Series]
    chance: float | None = None


def summarise(points: pd.DataFrame) -> pd.DataFrame:
    """Per round: mean x, and mean, min and max y over the runs (finite values only)."""
    finite = points[np.isfinite(points["y"].to_numpy(dtype="float64"))]
    grouped = finite.groupby("round", sort=True)
    return pd.DataFrame({"x": grouped["x"].mean(), "y": grouped["y"].mean(), "low": grouped["y"].min(),
                         "high": grouped["y"].max(), "n": grouped["y"].size()})


def round_ticks(rounds: list[int]) -> list[int]:
    """The evaluated rounds, or an even subset of them (always with the last) when there are many."""
    rounds = sorted(set(rounds))
    if len(rounds) <= MAX_TICKS:
        return rounds
    step = math.ceil(len(rounds) / (MAX_TICKS - 1))
    ticks = rounds[::step]
    if ticks[-1] != rounds[-1]:
        if rounds.index(rounds[-1]) - rounds.index(ticks[-1]) < step / 2:
            ticks = ticks[:-1]  # too close to the last round's tick to be read apart
        ticks.append(rounds[-1])
    return ticks


def limits(panels: list[Panel]) -> tuple[float, float]:
    """y-limits that hold every band, chance line and paper mark of ``panels``, with a margin."""
    values = [v for p in panels for s in p.series for v in (summarise(s.points)[["low", "high"]].to_numpy().ravel())]
    values += [s.paper for p in panels for s in p.series if s.paper is not None]
    values += [p.chance for p in panels if p.chance is not None]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return 0.0, 1.0
    low, high = min(values), max(values)
    pad = 0.04 * (high - low) if high > low else 1.0
    return low - pad, high + pad


def curves_figure(panel: Panel, stem: Path, *, xlabel: str, ylabel: str, ylim=None, rounds_axis: bool = True,
                  chance_label: str = "chance") -> list[Path]:
    """One panel on its own, legend at the right."""
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        handles = _draw(ax, panel, rounds_axis, markersize=5.0, base_width=2.6)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        if ylim is not None:
            ax.set_ylim(*ylim)
        ax.set_title(panel.title)
        ax.legend(*_legend(handles, panel, chance_label, with_n=True), loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  frameon=False, fontsize=8)
        return _save(fig, stem)


def curves_grid(panels: list[Panel], stem: Path, *, xlabel: str, ylabel: str, rounds_axis: bool = True,
                chance_label: str = "chance") -> list[Path]:
    """Every setting on one page, one row per dataset sharing its y-axis; one legend for all panels (a
    method keeps its style in every panel)."""
    rows = 1 + max(p.row for p in panels)
    cols = 1 + max(p.col for p in panels)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.2 * cols + 0.4, 2.4 * rows + 0.7), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False, sharey="row")
        handles: dict = {}
        for panel in panels:
            ax = axes[panel.row][panel.col]
            handles.update(_draw(ax, panel, rounds_axis, markersize=3.5, base_width=2.2))
            ax.set_title(panel.title, fontsize=9)
            if panel.row == rows - 1 or not any(p.row == panel.row + 1 and p.col == panel.col for p in panels):
                ax.set_xlabel(xlabel)
            if panel.col == 0:
                ax.set_ylabel(ylabel)
        for row in range(rows):
            for col in range(cols):
                if not any(p.row == row and p.col == col for p in panels):
                    axes[row][col].set_visible(False)
        merged = Panel(0, 0, "", [], chance=next((p.chance for p in panels if p.chance is not None), None))
        merged.series = [s for p in panels for s in p.series]
        fig.legend(*_legend(handles, merged, chance_label, with_n=False), loc="outside lower center",
                   ncol=min(5, len(handles) + 2), frameon=False, fontsize=8)
        return _save(fig, stem)


def _draw(ax, panel: Panel, rounds_axis: bool, markersize: float, base_width: float) -> dict:
    """The panel's lines, bands, chance line and paper marks; returns {(style, label): line handle}."""
    handles, last, xs = {}, 0.0, set()
    for series in sorted(panel.series, key=lambda s: s.style):
        stats = summarise(series.points)
        if stats.empty:
            continue
        style = line_style(series.style)
        count = len(stats)
        step = 1 if count <= MAX_MARKERS else math.ceil(count / MAX_MARKERS)
        (handle,) = ax.plot(stats["x"], stats["y"], linewidth=line_width(series.style, base_width),
                            markersize=markersize, markerfacecolor="none", markeredgewidth=1.1,
                            markevery=(series.style % step, step), **style)
        if int(stats["n"].max()) > 1:
            ax.fill_between(stats["x"], stats["low"], stats["high"], color=style["color"], alpha=0.15, linewidth=0)
        handles[(series.style, series.label)] = handle
        last = max(last, float(stats["x"].max()))
        xs.update(int(r) for r in stats.index)
    if panel.chance is not None:
        ax.axhline(panel.chance, **CHANCE)
    papers = [s for s in panel.series if s.paper is not None]
    if papers and last > 0:
        gap = paper_gap(last)
        ax.axvline(last + gap / 2, color="0.75", linewidth=0.6)
        for i, series in enumerate(papers):
            style = line_style(series.style)
            # Staggered across the margin, so that methods the paper puts close together stay apart.
            dodge = (i - (len(papers) - 1) / 2) * min(0.14 * gap, 0.6 * gap / max(1, len(papers) - 1))
            ax.plot([last + gap + dodge], [series.paper], linestyle="none", marker=style["marker"],
                    color=style["color"],
                    markersize=markersize + 0.5, markeredgecolor="black", markeredgewidth=0.4)
        ax.set_xlim(right=last + 1.6 * gap)
    if rounds_axis and xs:
        ticks = round_ticks(sorted(xs))
        ax.set_xticks(ticks + ([last + paper_gap(last)] if papers else []),
                      [str(t) for t in ticks] + (["paper"] if papers else []))
    elif not rounds_axis:
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.grid(alpha=0.3)
    return handles


def paper_gap(last: float) -> float:
    """How far right of the last round the paper's marks sit: room for the "paper" tick label."""
    return max(1.5, 0.16 * last)


def _legend(handles: dict, panel: Panel, chance_label: str, with_n: bool):
    items = sorted(handles.items())
    labels = []
    for (style, label), _ in items:
        runs = {r for s in panel.series if s.style == style for r in s.points["run"]}
        labels.append(f"{label} (n={len(runs)})" if with_n else label)
    extra_handles, extra_labels = [], []
    if panel.chance is not None:
        extra_handles.append(Line2D([], [], **CHANCE))
        extra_labels.append(chance_label)
    if any(s.paper is not None for s in panel.series):
        extra_handles.append(Line2D([], [], linestyle="none", marker="o", color="0.5", markeredgecolor="black",
                                    markeredgewidth=0.4))
        extra_labels.append("paper's final accuracy (filled)")
    return [h for _, h in items] + extra_handles, labels + extra_labels


def partition_figure(counts: np.ndarray, title: str, stem: Path) -> list[Path]:
    """Class x client sample counts (``counts`` is clients x classes); the counts are written in the
    cells while they stay legible."""
    counts = np.asarray(counts).T
    n_classes, n_clients = counts.shape
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(min(12.0, 2.5 + 0.3 * n_clients), min(9.0, 1.6 + 0.25 * n_classes)))
        ax = fig.add_subplot()
        image = ax.imshow(counts, aspect="auto", interpolation="nearest", cmap="cividis")
        fig.colorbar(image, ax=ax, label="samples")
        if n_clients <= 20 and n_classes <= 20:
            light = counts.max() * 0.6
            for (cls, client), value in np.ndenumerate(counts):
                ax.text(client, cls, str(value), ha="center", va="center", fontsize=6,
                        color="black" if value > light else "white")
        ax.set_xlabel("client")
        ax.set_ylabel("class")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        return _save(fig, stem)


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Not with_suffix: a stem such as "curves_fmnist_0.01" already holds a dot.
    png, svg = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"
    fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return [png, svg]
