"""Reports of a suite's results: tables (Markdown, LaTeX, HTML), figures (PNG, SVG), tidy CSVs and
index.html.

Reads ``<results>/<suite>/`` (or the CSVs of an earlier report) only and never imports torch, so a
report can be rebuilt anywhere the results or the CSVs are, and rebuilding unchanged results gives
byte-identical files.
"""
from reports.build import build_from_csv, build_report
from reports.errors import ReportError

__all__ = ["ReportError", "build_from_csv", "build_report"]
