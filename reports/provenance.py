"""Where a report's numbers come from: suite, code revision, libraries, hardware, and when.

Every value is read from the runs (their summaries, or runs.csv), never from the machine that builds
the report, and the date is the newest run's, not the build's: a rebuild is byte-identical, and a
report built elsewhere still says where its numbers were made. Several values (runs made at two
revisions, on two machines) are all listed, each with its number of runs.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

SUITE_FILE = "benchmarks/experiments/suites/{}.toml"
NOT_RECORDED = "not recorded"


@dataclass(frozen=True)
class Provenance:
    suite: str
    runs: int
    newest: str
    oldest: str
    revisions: str
    torch: str
    cpu: str
    gpu: str
    python: str
    numpy: str

    def suite_file(self) -> str:
        # A derived suite ("quick@<hash>": a suite run with overrides) comes from its base suite's file.
        base, _, derived = self.suite.partition("@")
        return SUITE_FILE.format(base) + (f" with overrides {derived}" if derived else "")

    def line(self) -> str:
        """One sentence for a table's footnote."""
        when = self.newest if self.oldest == self.newest else f"{self.oldest} to {self.newest}"
        hardware = f"CPU {self.cpu}" + (f", GPU {self.gpu}" if self.gpu else "")
        return (f"Provenance: suite {self.suite} ({self.suite_file()}); {self.runs} run{'s' if self.runs != 1 else ''}"
                f" finished {when}; git {self.revisions}; torch {self.torch}; {hardware}.")

    def rows(self) -> list[tuple[str, str]]:
        """(what, value) pairs for the page's provenance table."""
        rows = [("Suite", f"{self.suite} ({self.suite_file()} at the revision below)"),
                ("Runs", str(self.runs)), ("Newest run finished", self.newest), ("Oldest run finished", self.oldest),
                ("Git revision", self.revisions), ("torch", self.torch), ("Python", self.python),
                ("NumPy", self.numpy), ("CPU (kernel instruction set)", self.cpu)]
        return rows + ([("GPU", self.gpu)] if self.gpu else [])


def provenance(suite: str, runs: pd.DataFrame) -> Provenance:
    """The provenance of ``runs`` (rows of the runs frame: the runs a table or page shows)."""
    dates = sorted(d for d in runs["finished"] if d)
    cpu = runs["cpu"].where(runs["cpu"] != "", NOT_RECORDED) + runs["cpu_capability"].map(
        lambda c: f" ({c})" if c else "")
    return Provenance(suite=suite, runs=len(runs), newest=dates[-1] if dates else NOT_RECORDED,
                      oldest=dates[0] if dates else NOT_RECORDED,
                      revisions=_counted(runs["revision"].map(short_revision)), torch=_counted(runs["torch"]),
                      cpu=_counted(cpu), gpu=_counted(runs["gpu"], absent=""), python=_counted(runs["python"]),
                      numpy=_counted(runs["numpy"]))


def short_revision(revision: str) -> str:
    """The first 12 hex digits, and whether the work tree had uncommitted changes."""
    if not revision:
        return ""
    dirty = revision.endswith("-dirty")
    return revision.removesuffix("-dirty")[:12] + (" (uncommitted changes)" if dirty else "")


def _counted(values: pd.Series, absent: str = NOT_RECORDED) -> str:
    """One value as it is; several as ``a (3 runs), b (1 run)``, most frequent first."""
    counts = values[values != ""].value_counts()
    if counts.empty:
        return absent
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    missing = int((values == "").sum())
    if len(ordered) == 1 and not missing:
        return ordered[0][0]
    parts = [f"{value} ({n} run{'s' if n != 1 else ''})" for value, n in ordered]
    if missing:
        parts.append(f"{NOT_RECORDED} ({missing} run{'s' if missing != 1 else ''})")
    return ", ".join(parts)
