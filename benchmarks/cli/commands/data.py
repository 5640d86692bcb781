"""`python -m benchmarks data`: which datasets this machine has, and how to get the missing ones.

Answers "will my run find its data?" before any compute is spent. `--prepare` builds the caches of
the datasets that are available (this is what `make setup` runs), so that later runs load in well
under a second; missing datasets are left alone and shown with how to get them.
"""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None,
                        help="data directory (default: $HETBENCH_DATA, else <repo>/data)")
    parser.add_argument("--prepare", action="store_true",
                        help="build the caches of all available real datasets")


def run(args) -> int:
    # Imported here so that `configure` (and --help) never pays for loading torch.
    from benchmarks.data.datasets import DatasetError, dataset_status, prepare_dataset

    failed = 0
    if args.prepare:
        for row in dataset_status(args.data_dir):
            if not row["ready"]:
                continue
            try:
                print(f"{row['name']}: cache at {prepare_dataset(row['name'], args.data_dir)}")
            except DatasetError as e:
                print(f"{row['name']}: not prepared: {e}")
                failed += 1
    print(format_status(dataset_status(args.data_dir)))
    return 1 if failed else 0


def format_status(rows: list[dict]) -> str:
    """A fixed-width table, then one 'how to get it' line per missing dataset."""
    table = [("dataset", "ready", "cached", "found at")]
    table += [(r["name"], "yes" if r["ready"] else "no", "yes" if r["cached"] else "no", r["found_at"] or "-")
              for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)) + "  " + line[3] for line in table]
    lines += [f"{r['name']}: {r['how_to_get']}" for r in rows if not r["ready"]]
    return "\n".join(lines)
