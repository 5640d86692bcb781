"""``python -m reports SUITE [--results DIR] [--out DIR]``: build the report of one suite."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.store.rundir import REPO_ROOT, results_root
from reports.build import ReportError, build_report

# Folders of the reports package itself, which a default output folder must not overwrite.
RESERVED = ("reference", "__pycache__")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description="Build the report of one suite "
                                     "from <results>/<suite>/ into reports/<suite>/ (or --out).")
    parser.add_argument("suite", help="suite name: the folder under the results root")
    parser.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    parser.add_argument("--out", help="report folder (default: reports/<suite>/ in the repository)")
    args = parser.parse_args(argv)
    try:
        out = Path(args.out) if args.out else _default_out(args.suite)
        written = build_report(args.suite, results_root(args.results), out)
    except ReportError as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"report: {written[-1]} ({len(written)} files)")
    return 0


def _default_out(suite: str) -> Path:
    if suite in RESERVED:
        raise ReportError(f"reports: suite {suite!r} would overwrite reports/{suite}/; pass --out DIR")
    return REPO_ROOT / "reports" / suite


if __name__ == "__main__":
    sys.exit(main())
