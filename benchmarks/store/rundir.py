"""Run directories: written under a temporary name, renamed into place when complete.

A directory named by a run id is therefore always whole, and a sweep can skip it. The format is
documented in ``results/README.md``.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from benchmarks.store.claims import CLAIM_FILE, Claim, ClaimError
from benchmarks.store.schema import (CONFIG_FILE, ROUNDS_FILE, SCHEMA, SUMMARY_FILE, TIMINGS_FILE, format_row,
                                     header_line)

REPO_ROOT = Path(__file__).resolve().parents[2]


class ResultsError(RuntimeError):
    """The results folder cannot be written; the message says which path and why."""


# A suite is one folder directly under the results root: a name, never a path, so that nothing is written
# outside the root (../x, /abs) or hidden among the dot-folders of runs in progress (.x).
_SUITE_NAME = re.compile(r"[A-Za-z0-9_@-][A-Za-z0-9_.@-]{0,99}")
SUITE_NAME_RULE = "letters, digits and _ . @ - only, no leading dot, at most 100 characters"


def is_suite_name(name: object) -> bool:
    return isinstance(name, str) and _SUITE_NAME.fullmatch(name) is not None


def results_root(explicit: str | Path | None = None) -> Path:
    """``--results DIR``, else ``$HETBENCH_RESULTS``, else ``results/`` under the repository."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("HETBENCH_RESULTS")
    return Path(env) if env else REPO_ROOT / "results"


@lru_cache(maxsize=1)
def git_revision() -> str:
    """The checkout's commit (``-dirty`` with uncommitted changes); where there is no git repository (a
    copy of the tree sent to a GPU machine), ``$HETBENCH_GIT_REVISION`` as the copy's sender wrote it."""
    fallback = os.environ.get("HETBENCH_GIT_REVISION", "").strip() or "unknown"
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=10)
        if head.returncode != 0:
            return fallback
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return fallback
    return head.stdout.strip() + ("-dirty" if dirty else "")


class RunDirectory:
    """One run's output folder under ``<root>/<suite>/``.

    While running, the folder is ``.tmp-<run_id>`` with a claim (``benchmarks.store.claims``: host, pid,
    heartbeat): a later process, on any host sharing the folder, resumes it from its checkpoint once the
    claim is stale, and refuses to touch it while the claim is fresh.
    """

    def __init__(self, root: Path, suite: str, run_id: str):
        if not is_suite_name(suite):
            raise ResultsError(f"results: suite {suite!r} is not a name ({SUITE_NAME_RULE})")
        self.suite_dir = Path(root) / suite
        self.run_id = run_id
        self.final = self.suite_dir / run_id
        self.tmp = self.suite_dir / f".tmp-{run_id}"
        self._rounds = None
        self._timings = None
        self._claim_handle: Claim | None = None

    def is_complete(self) -> bool:
        return (self.final / SUMMARY_FILE).is_file()

    def open(self, config: dict, resume_bytes: tuple[int, int] | None = None) -> None:
        """Create (or, with ``resume_bytes``, reopen and cut back) the temporary folder's files."""
        try:
            self.suite_dir.mkdir(parents=True, exist_ok=True)
            self._claim()
            if resume_bytes is None:
                for child in self.tmp.iterdir():
                    if child.is_dir():
                        shutil.rmtree(child)
                    elif child.name != CLAIM_FILE:
                        child.unlink()
                _write_json(self.tmp / CONFIG_FILE, config)
                self._rounds = open(self.tmp / ROUNDS_FILE, "w", newline="")
                self._timings = open(self.tmp / TIMINGS_FILE, "w", newline="")
                self._rounds.write(header_line())
                self._timings.write(header_line())
            else:
                self._rounds = _reopen_truncated(self.tmp / ROUNDS_FILE, resume_bytes[0])
                self._timings = _reopen_truncated(self.tmp / TIMINGS_FILE, resume_bytes[1])
        except OSError as exc:
            raise ResultsError(f"results: cannot write under {self.suite_dir} ({exc.strerror or exc})") from None

    def _claim(self) -> None:
        self.tmp.mkdir(exist_ok=True)
        claim = Claim(self.tmp)
        try:
            claim.acquire()
        except ClaimError as exc:
            raise ResultsError(str(exc)) from None
        self._claim_handle = claim

    def _release(self) -> None:
        if self._claim_handle is not None:
            self._claim_handle.release()
            self._claim_handle = None

    def add(self, rnd: int, split: str, metric: str, value) -> None:
        self._write(self._rounds, format_row(rnd, split, metric, value))

    def add_time(self, rnd: int, metric: str, seconds: float) -> None:
        self._write(self._timings, format_row(rnd, "time", metric, seconds))

    def _write(self, fh, line: str) -> None:
        try:
            fh.write(line)
        except OSError as exc:
            raise ResultsError(f"results: cannot write {fh.name} ({exc.strerror or exc})") from None

    def flush(self) -> tuple[int, int]:
        """Flush both CSV files to disk; returns their sizes in bytes (for a checkpoint)."""
        try:
            for fh in (self._rounds, self._timings):
                fh.flush()
                os.fsync(fh.fileno())
            return self._rounds.tell(), self._timings.tell()
        except OSError as exc:
            raise ResultsError(f"results: cannot write under {self.tmp} ({exc.strerror or exc})") from None

    def finish(self, summary: dict) -> Path:
        """Write summary.json and move the folder into place; returns the final path."""
        try:
            self.flush()
            self._close()
            self._release()
            (self.tmp / "checkpoint.pt").unlink(missing_ok=True)
            summary = {"schema": SCHEMA, **summary}
            _write_json(self.tmp / SUMMARY_FILE, summary)
            if self.final.exists():
                # Another process finished the same config first; its result is equally valid.
                shutil.rmtree(self.tmp)
            else:
                os.replace(self.tmp, self.final)
        except OSError as exc:
            raise ResultsError(f"results: cannot finish {self.final} ({exc.strerror or exc})") from None
        return self.final

    def abandon(self) -> None:
        """Close files but keep the temporary folder: its checkpoint lets a later run resume, and
        reports list it as unfinished."""
        self._close()
        self._release()

    def _close(self) -> None:
        for fh in (self._rounds, self._timings):
            if fh is not None and not fh.closed:
                try:
                    fh.close()
                except OSError:
                    pass


def _reopen_truncated(path: Path, size: int):
    fh = open(path, "r+", newline="")
    fh.truncate(size)
    fh.seek(size)
    return fh


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=1, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
