"""``python -m reports SUITE [--results DIR] [--published DIR] | --from-csv DIR [--out DIR]``: build the
report of one suite.

Bad input (no such suite, a --from-csv folder without its CSVs, an --out that is a file) ends with one
line on stderr and exit status 2, never a traceback. When the suite's results folder is absent but
its committed report folder holds runs.csv and curves.csv (results are not committed; those are),
the report is rebuilt from them, so `make report SUITE=cpu` works in a fresh clone. With ``--published
DIR`` the results folder may be absent: the report is then the earlier one's finished runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.store.rundir import REPO_ROOT, results_root
from reports.build import build_from_csv, build_report
from reports.errors import ReportError
from reports.tidy import CURVES_CSV, RUNS_CSV

# Folders of the reports package itself, which a default output folder must not overwrite.
RESERVED = ("reference", "__pycache__")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reports", description="Build the report of one suite "
                                     "from <results>/<suite>/ (or from the CSVs of an earlier report) into "
                                     "reports/<suite>/ (or --out).")
    parser.add_argument("suite", help="suite name: the folder under the results root")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--results", help="results root (default: $HETBENCH_RESULTS or results/)")
    source.add_argument("--from-csv", metavar="DIR", help="rebuild from DIR/runs.csv and DIR/curves.csv (a report "
                        "folder) instead of result folders")
    parser.add_argument("--published", metavar="DIR", help="an earlier report folder of this suite: the runs its "
                        "CSVs include that have no result folder are taken from them (not with --from-csv)")
    parser.add_argument("--out", help="report folder (default: reports/<suite>/ in the repository)")
    args = parser.parse_args(argv)
    if args.published and args.from_csv:
        print("reports: --published: not with --from-csv (which reads one report's CSVs only)", file=sys.stderr)
        return 2
    try:
        out = Path(args.out) if args.out else _default_out(args.suite)
        if args.from_csv:
            written = build_from_csv(args.suite, Path(args.from_csv), out)
        else:
            results = results_root(args.results)
            committed = REPO_ROOT / "reports" / args.suite
            if (not (results / args.suite).is_dir() and not args.results and not args.published
                    and args.suite not in RESERVED
                    and (committed / RUNS_CSV).is_file() and (committed / CURVES_CSV).is_file()):
                print(f"reports: no folder {results / args.suite}; rebuilding from {committed / RUNS_CSV} and "
                      f"{CURVES_CSV}", file=sys.stderr)
                written = build_from_csv(args.suite, committed, out)
            else:
                written = build_report(args.suite, results, out,
                                       Path(args.published) if args.published else None)
    except ReportError as exc:
        print(exc, file=sys.stderr)
        return 2
    except OSError as exc:  # a report folder that cannot be written: say which file and why, in one line
        print(f"reports: cannot write {exc.filename or 'the report'}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    print(f"report: {written[-1]} ({len(written)} files)")
    return 0


def _default_out(suite: str) -> Path:
    if suite in RESERVED or "/" in suite or suite in ("", ".", ".."):
        raise ReportError(f"reports: suite {suite!r} would overwrite reports/{suite}/; pass --out DIR")
    return REPO_ROOT / "reports" / suite


if __name__ == "__main__":
    sys.exit(main())
