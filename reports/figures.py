"""Figures of a report: accuracy curves and partition heatmaps, each as PNG and SVG.

Every figure must survive grey-scale printing and colour-blind readers, so each algorithm gets an
Okabe-Ito colour and also its own line style and marker. Every file must be byte-identical when
rebuilt, so timestamps and software tags are stripped, SVG ids are salted with a constant, and
fonts and resolution are fixed. Figures are bare ``Figure`` objects: no pyplot global state.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reports.load import Run, is_finite

# Okabe & Ito (2008), reordered so that the first colours keep their contrast in grey-scale print.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "h")
DPI = 150
RC = {"svg.hashsalt": "hetbench-report", "svg.fonttype": "path", "font.family": "DejaVu Sans",
      "font.size": 9, "savefig.dpi": DPI, "figure.dpi": DPI}


def line_style(index: int) -> dict:
    """The index-th algorithm's look; (line style, marker) pairs stay distinct for 18 algorithms."""
    return {"color": OKABE_ITO[index % len(OKABE_ITO)], "linestyle": LINE_STYLES[index % len(LINE_STYLES)],
            "marker": MARKERS[index % len(MARKERS)]}


def curves_figure(lines: list[tuple[int, str, list[Run]]], title: str, stem: Path) -> list[Path]:
    """Test accuracy per round, one line (mean over seeds) per algorithm and a min-max band over seeds.

    Each line comes with its style index, so an algorithm looks the same in every figure of a report.
    """
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(6.4, 3.6))
        ax = fig.add_subplot()
        for index, label, runs in lines:
            rounds, mean, low, high = _curve_stats(runs)
            style = line_style(index)
            ax.plot(rounds, mean, label=f"{label} (n={len(runs)})", markevery=max(1, len(rounds) // 10),
                    markersize=4, linewidth=1.4, **style)
            if len(runs) > 1:
                ax.fill_between(rounds, low, high, color=style["color"], alpha=0.18, linewidth=0)
        ax.set_xlabel("round")
        ax.set_ylabel("test accuracy (%)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.set_title(title)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return _save(fig, stem)


def curves_grid_figure(panels: list[tuple[int, int, str, list[tuple[int, str, list[Run]]]]], stem: Path) -> list[Path]:
    """Every setting's curves on one page: ``panels`` are (row, column, title, lines) as in curves_figure,
    with one legend for all of them (an algorithm keeps its style in every panel)."""
    rows = 1 + max(p[0] for p in panels)
    cols = 1 + max(p[1] for p in panels)
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(3.2 * cols, 2.4 * rows + 0.5), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        legend = {}
        for row, col, title, lines in panels:
            ax = axes[row][col]
            for index, label, runs in lines:
                rounds, mean, low, high = _curve_stats(runs)
                style = line_style(index)
                (handle,) = ax.plot(rounds, mean, markevery=max(1, len(rounds) // 6), markersize=3.5,
                                    linewidth=1.2, **style)
                if len(runs) > 1:
                    ax.fill_between(rounds, low, high, color=style["color"], alpha=0.18, linewidth=0)
                legend.setdefault((index, label), handle)
            ax.set_title(title, fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            if row == rows - 1:
                ax.set_xlabel("round")
            if col == 0:
                ax.set_ylabel("test accuracy (%)")
        for row in range(rows):
            for col in range(cols):
                if not any(p[0] == row and p[1] == col for p in panels):
                    axes[row][col].set_visible(False)
        ordered = sorted(legend.items())
        fig.legend([h for _, h in ordered], [label for (_, label), _ in ordered], loc="outside lower center",
                   ncol=len(ordered), frameon=False)
        return _save(fig, stem)


def partition_figure(counts: list[list[int]], title: str, stem: Path) -> list[Path]:
    """Class x client sample counts; the counts are written in the cells while they stay legible."""
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


def _curve_stats(runs: list[Run]):
    rounds = sorted({rnd for r in runs for rnd, v in r.test_curve.items() if is_finite(v)})
    per_round = [[100.0 * r.test_curve[rnd] for r in runs if is_finite(r.test_curve.get(rnd))] for rnd in rounds]
    return rounds, [statistics.fmean(v) for v in per_round], [min(v) for v in per_round], [max(v) for v in per_round]


def _save(fig: Figure, stem: Path) -> list[Path]:
    stem.parent.mkdir(parents=True, exist_ok=True)
    # Not with_suffix: a stem such as "curves_fmnist_0.01" already holds a dot.
    png, svg = stem.parent / f"{stem.name}.png", stem.parent / f"{stem.name}.svg"
    fig.savefig(png, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    fig.savefig(svg, bbox_inches="tight", metadata={"Date": None, "Creator": None})
    return [png, svg]
