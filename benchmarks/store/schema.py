"""The results schema, written and read in one place (standard library only).

A run folder ``<root>/<suite>/<run_id>/`` holds:
- ``config.json``: the experiment settings (the hashed part of the config);
- ``rounds.csv``: long format ``round,split,metric,value``, deterministic numbers only;
- ``timings.csv``: the same format, wall and CPU seconds (split ``time``);
- ``summary.json``: schema version, config, execution settings and the executor used, algorithm and
  dataset titles, versions and hardware, partition statistics, final and best-validation accuracy.
The suite folder ``<root>/<suite>/`` also holds ``deviations.csv``: the algorithm hyperparameters the
suite sets away from the official code's values and the reasons its file gives (written by the sweep and
by ``hetbench report``). The runner writes through :class:`benchmarks.store.rundir.RunDirectory`; the
sweep, the tuner and the reports read through the functions here. ``results/README.md`` documents the format for users.
"""
from __future__ import annotations

import csv
import io
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.core.dotted import get_dotted

# 2: execution settings left config (and the run id); execution, titles and hardware recorded.
SCHEMA = 2
CONFIG_FILE = "config.json"
ROUNDS_FILE = "rounds.csv"
TIMINGS_FILE = "timings.csv"
SUMMARY_FILE = "summary.json"
LONG_HEADER = ("round", "split", "metric", "value")
DEVIATIONS_FILE = "deviations.csv"
DEVIATIONS_HEADER = ("algorithm", "setting", "ours", "official", "why")


class SchemaError(ValueError):
    """A results file that cannot be read as the schema says; the message names the file and why."""


@dataclass(frozen=True)
class Row:
    round: int
    split: str
    metric: str
    value: float


def format_value(value) -> str:
    """Floats as Python's shortest round-tripping repr, so a rerun writes the same bytes."""
    return repr(float(value))


def format_row(rnd: int, split: str, metric: str, value) -> str:
    return f"{rnd},{split},{metric},{format_value(value)}\n"


def header_line() -> str:
    return ",".join(LONG_HEADER) + "\n"


def read_long_csv(path: Path) -> list[Row]:
    """Every row of a rounds.csv or timings.csv; a bad header, a short or non-numeric row raises
    SchemaError naming the file and the line."""
    rows: list[Row] = []
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if tuple(header or ()) != LONG_HEADER:
            raise SchemaError(f"{path.name}: header {header!r} is not {','.join(LONG_HEADER)}")
        for line, fields in enumerate(reader, start=2):
            if len(fields) != 4:
                raise SchemaError(f"{path.name}: line {line} has {len(fields)} fields, not 4")
            try:
                rows.append(Row(int(fields[0]), fields[1], fields[2], float(fields[3])))
            except ValueError:
                raise SchemaError(f"{path.name}: line {line} is not numeric ({','.join(fields)[:80]})") from None
    return rows


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; SchemaError when it is missing, unreadable or not an object."""
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        raise SchemaError(f"{path.name}: missing") from None
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path.name}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise SchemaError(f"{path.name}: not a JSON object")
    return data


def read_summary(run_dir: Path) -> dict:
    return read_json(Path(run_dir) / SUMMARY_FILE)


def is_complete(run_dir: Path) -> bool:
    return (Path(run_dir) / SUMMARY_FILE).is_file()


def curve(rows: list[Row], split: str, metric: str) -> dict[int, float]:
    """round -> value of one (split, metric) series."""
    return {r.round: r.value for r in rows if r.split == split and r.metric == metric}


def algorithm_title(summary: dict) -> str:
    """How tables name a run's algorithm: the title its class declared, else its registry name."""
    return summary.get("algorithm_title") or get_dotted(summary, "config.algorithm", "?")


def dataset_title(summary: dict) -> str:
    return get_dotted(summary, "dataset.title", None) or get_dotted(summary, "config.dataset.name", "?")


def write_deviations(path: Path, rows: list[dict[str, str]]) -> None:
    """``rows`` (DEVIATIONS_HEADER keys) as a CSV, replaced atomically so a reader never sees half a file.
    Many sweep tasks (``--cell``, ``--shard``) may write the same file at once: each writes its own
    temporary file, and none rewrites a file that already holds these rows."""
    path = Path(path)
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=DEVIATIONS_HEADER, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: row[key] for key in DEVIATIONS_HEADER} for row in rows)
    data = text.getvalue().encode("utf-8")
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def read_deviations(path: Path) -> list[dict[str, str]] | None:
    """The rows of a deviations.csv; None when there is no such file."""
    path = Path(path)
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != DEVIATIONS_HEADER:
            raise SchemaError(f"{path}: header {reader.fieldnames} is not {list(DEVIATIONS_HEADER)}")
        rows = [dict(row) for row in reader]
    for number, row in enumerate(rows, start=2):
        if any(value is None for value in row.values()) or None in row:
            raise SchemaError(f"{path}: line {number} does not have the {len(DEVIATIONS_HEADER)} columns "
                              f"{', '.join(DEVIATIONS_HEADER)}")
    return rows
