"""Reports of a suite's results: tables (Markdown, LaTeX, HTML), figures (PNG, SVG) and index.html.

Reads ``<results>/<suite>/`` only and never imports torch, so a report can be rebuilt anywhere the
results folder is, and rebuilding unchanged results gives byte-identical files.
"""
from reports.build import ReportError, build_report

__all__ = ["ReportError", "build_report"]
