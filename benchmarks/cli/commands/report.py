"""Build the report of one suite (tables, figures, index.html) from its results."""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="suite name: the folder under the results root")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--out", help="report folder (default: reports/<suite>/ in the repository)")


def run(args) -> int:
    from reports.__main__ import main as report_main
    argv = [args.suite] + (["--results", args.results] if args.results else []) + (["--out", args.out] if args.out else [])
    return report_main(argv)
