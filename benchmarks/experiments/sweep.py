"""Run every cell of a suite, skipping finished ones, optionally in several processes or on a Ray cluster.

With ``--jobs N`` each cell runs in its own worker process (spawned, so no torch state is shared) with
the cell's own thread count; on this 2-core machine two single-thread jobs beat one two-thread job. With
``--backend ray`` each cell is a Ray task (``ray_cells.py``) that calls the same per-cell function, so the
results are the same folders and bytes. Cells that a live writer elsewhere holds (another host sharing the
results folder, another array task) are left to it.
"""
from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from benchmarks.experiments.cells import claimed_elsewhere
from benchmarks.experiments.config import RunConfig, config_from_dict
from benchmarks.experiments.ray_cells import RayOptions
from benchmarks.store.rundir import RunDirectory, results_root
from benchmarks.core.dotted import get_dotted
from benchmarks.store.schema import DEVIATIONS_FILE, is_complete, read_summary, write_deviations
from benchmarks.experiments.suites import Suite


class SweepError(RuntimeError):
    """Some cells of a sweep failed; the others finished and are kept."""


def _run_cell(config_dict: dict, suite: str, results: str, data_dir, progress: bool) -> str:
    from benchmarks.engine.runner import run
    return str(run(config_from_dict(config_dict), suite=suite, results=results, data_dir=data_dir,
                   progress=progress))


def pending_cells(suite: Suite, results: Path) -> list[RunConfig]:
    return [c for c in suite.cells if not RunDirectory(results, suite.name, c.run_id()).is_complete()]


def run_sweep(suite: Suite, jobs: int = 1, results=None, data_dir=None, progress: bool = True,
              ray_options: RayOptions | None = None) -> list[Path]:
    """Run the suite's unfinished cells (as Ray tasks when ``ray_options`` is given); returns every cell's
    run directory (finished ones included)."""
    from tqdm import tqdm

    root = results_root(results)
    deviations = root / suite.name / DEVIATIONS_FILE
    suite, notes = suite.runnable(data_dir)
    for note in notes:
        print(note, file=sys.stderr)
    todo = pending_cells(suite, root)
    held = claimed_elsewhere(todo, root, suite.name)
    for cfg, claim in held:
        print(f"run {cfg.run_id()} is being written by pid {claim.get('pid')} on host {claim.get('host')}; "
              "left to it", file=sys.stderr)
    held_ids = {cfg.run_id() for cfg, _ in held}
    todo = [cfg for cfg in todo if cfg.run_id() not in held_ids]
    done = len(suite.cells) - len(todo) - len(held)
    bar = tqdm(total=len(suite.cells), initial=done, desc=f"sweep {suite.name}", unit="run", file=sys.stderr,
               disable=not progress, dynamic_ncols=True)
    failures = []
    # Written beside the runs once there are runs (a sweep refused before its first run leaves no folder).
    written = deviations.parent.is_dir()
    if written:
        write_deviations(deviations, suite.deviations)
    for cfg, exc in _outcomes(todo, suite.name, root, data_dir, jobs, progress, ray_options):
        if not written and deviations.parent.is_dir():
            write_deviations(deviations, suite.deviations)
            written = True
        if exc is not None:
            failures.append((cfg.run_id(), exc))
        bar.update(1)
    bar.close()
    for run_id, exc in failures:
        print(f"run {run_id} failed: {exc}", file=sys.stderr)
    if failures:
        raise SweepError(f"sweep {suite.name}: {len(failures)} of {len(todo)} runs failed (listed above); "
                         "finished runs are kept, run the sweep again to retry the rest")
    return [RunDirectory(root, suite.name, c.run_id()).final for c in suite.cells]


def _outcomes(todo: list[RunConfig], suite_name: str, root: Path, data_dir, jobs: int, progress: bool,
              ray_options: RayOptions | None) -> Iterator[tuple[RunConfig, BaseException | None]]:
    """Each cell with None or the exception its run raised, as runs finish; a failed cell must not stop
    the others."""
    if ray_options is not None:
        from benchmarks.experiments.ray_cells import run_on_ray
        # Ray workers may run on other nodes, in other folders: they get absolute paths.
        data_dir = None if data_dir is None else str(Path(data_dir).resolve())
        yield from run_on_ray(todo, _run_cell, suite_name, str(root.resolve()), data_dir, jobs, ray_options)
    elif jobs <= 1:
        for cfg in todo:
            try:
                _run_cell(cfg.to_dict(), suite_name, str(root), data_dir, progress)
            except Exception as exc:
                yield cfg, exc
            else:
                yield cfg, None
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_run_cell, cfg.to_dict(), suite_name, str(root), data_dir, False): cfg
                       for cfg in todo}
            for future in as_completed(futures):
                try:
                    future.result()
                except Exception as exc:
                    yield futures[future], exc
                else:
                    yield futures[future], None


def summary_table(run_dirs: list[Path]) -> str:
    """Final test accuracy (%) per algorithm x (dataset, alpha), mean over seeds, plus s/round."""
    cells: dict[tuple, list[float]] = {}
    speed: dict[str, list[float]] = {}
    columns: list[tuple] = []
    algos: list[str] = []
    for d in run_dirs:
        if not is_complete(d):
            continue
        s = read_summary(d)
        col = (get_dotted(s, "config.dataset.name", None), get_dotted(s, "config.partition.alpha", None))
        algo = get_dotted(s, "config.algorithm", None)
        if col not in columns:
            columns.append(col)
        if algo not in algos:
            algos.append(algo)
        acc = get_dotted(s, "final.test_accuracy", None)
        cells.setdefault((algo, col), []).append(float("nan") if acc is None else acc)
        speed.setdefault(algo, []).append(get_dotted(s, "timing.mean_round_seconds", None))
    columns.sort()
    header = ["algorithm"] + [f"{ds} a={a:g}" for ds, a in columns] + ["s/round"]
    rows = [header]
    for algo in algos:
        row = [algo]
        for col in columns:
            vals = cells.get((algo, col))
            row.append(f"{100 * sum(vals) / len(vals):.2f}" if vals else "-")
        row.append(f"{sum(speed[algo]) / len(speed[algo]):.2f}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
