"""Read one suite's run folders into the report's frames, setting aside every run a table must not use.

Averaging an unfinished, diverged, older-format or damaged run into a mean would silently bias it,
so every such folder stays a row of ``runs`` with its ``excluded`` reason, which the report lists on
its own. Damage is found here, per file, and never becomes a traceback: a rounds.csv cut off mid-line,
with a non-numeric value, emptied, or ending before the round its summary.json calls final, and a
summary.json whose numbers are not numbers. Results are read with pandas; the file names, header and
JSON reader are the results store's (``benchmarks.store.schema``), and nothing here imports torch.
"""
from __future__ import annotations

import csv
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from benchmarks.core.dotted import flatten, get_dotted, has_dotted
from benchmarks.store.schema import (CONFIG_FILE, DEVIATIONS_FILE, LONG_HEADER, ROUNDS_FILE, SCHEMA, SUMMARY_FILE,
                                     TIMINGS_FILE, SchemaError, algorithm_title, dataset_title, read_deviations,
                                     read_json)
from reports.errors import ReportError
from reports.frames import (CONFIG_PREFIX, CURVE_COLUMNS, PARTITION_COLUMNS, Suite, empty, normalise_curves,
                            normalise_partitions, normalise_runs)
from reports.tuning import tuned_overrides

# Dotted paths a summary must have for every table and figure of the report to be built from it.
REQUIRED_KEYS = (
    "run_id", "status", "seed", "config.algorithm", "config.dataset.name", "config.partition.scheme",
    "config.partition.alpha", "partition.class_counts", "final.round", "final.test_accuracy", "best_val",
    "timing.total_seconds", "paper_deviations", "artifacts",
)
SYNTHETIC_ARTIFACT = "dynafed_synthetic.png"
# Where a summary may record when its run finished; the report's date is the newest run's, never the
# build time, so that rebuilding unchanged results gives the same bytes. Runs that record none are
# dated by their summary.json's modification time (written once, when the run folder is completed).
FINISHED_KEYS = ("finished_at", "finished", "end_time", "date")
# What Python's float() reads as NaN: such a value is a number (a diverged metric), not damage.
NAN_WORDS = ("nan", "+nan", "-nan")


class Damaged(Exception):
    """A run folder the report must exclude; the message is the reason shown in the report."""


def load_results(suite: str, suite_dir: Path, results_root: Path | None = None) -> Suite:
    """Every folder under ``suite_dir``, in name order, as a row of ``runs``; the curves and partitions of
    the usable ones; DynaFed's image grids; the tuner's override files under ``results_root``."""
    records, curves, partitions, images = [], [], [], {}
    folders = Path(suite_dir).iterdir() if Path(suite_dir).is_dir() else ()  # none yet: every run published
    for path in sorted(p for p in folders if p.is_dir()):
        record, curve, counts = load_run(suite, path)
        records.append(record)
        if curve is not None:
            curves.append(curve.assign(run=path.name))
            partitions.append(_partition_rows(path.name, counts))
            if SYNTHETIC_ARTIFACT in json.loads(record["artifacts"]) and (path / SYNTHETIC_ARTIFACT).is_file():
                images[path.name] = path / SYNTHETIC_ARTIFACT
    runs = normalise_runs(pd.DataFrame.from_records(records) if records else pd.DataFrame({"run": []}))
    curve_frame = normalise_curves(pd.concat(curves, ignore_index=True)) if curves else empty(CURVE_COLUMNS)
    part_frame = (normalise_partitions(pd.concat(partitions, ignore_index=True)) if partitions
                  else empty(PARTITION_COLUMNS))
    return Suite(suite, runs, curve_frame, part_frame, images,
                 tuned_overrides(results_root) if results_root is not None else [],
                 suite_deviations(Path(suite_dir) / DEVIATIONS_FILE))


def suite_deviations(path: Path) -> list[dict[str, str]] | None:
    """The suite's deviations.csv (None without one); a malformed file is one ReportError line."""
    try:
        return read_deviations(path)
    except (SchemaError, OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReportError(f"reports: {path}: cannot be read ({exc})") from None


def load_run(suite: str, path: Path) -> tuple[dict, pd.DataFrame | None, list | None]:
    """(the run's record, its curves, its class counts); curves and counts are None for an excluded run."""
    base = {"suite": suite, "run": path.name, "excluded": "", "status": ""}
    config = _json_or_none(path / CONFIG_FILE)
    # config.json names the algorithm and setting of a run whose summary is missing or damaged.
    record = {**base, **_identity(config)} if config is not None else dict(base)
    try:
        summary = _summary(path)
        record = {**base, **_identity(summary["config"])}
        record.update(_facts(summary, path))
        if summary["status"] != "complete":
            record["excluded"] = _divergence(summary)
            return record, None, None
        curve = _curves(path, record)
        counts = _class_counts(summary)
        if record["num_classes"] is not None and record["num_classes"] != len(counts[0]):
            raise Damaged(f"summary.json: partition.class_counts has {len(counts[0])} classes, the dataset "
                          f"{record['num_classes']}")
        record["clients"], record["num_classes"] = len(counts), len(counts[0])
    except Damaged as exc:
        record["excluded"] = str(exc)
        return record, None, None
    finally:
        record.pop("tested", None)
    return record, curve, counts


def _summary(path: Path) -> dict:
    if path.name.startswith(".tmp-"):
        raise Damaged("unfinished: temporary folder of a crashed or still running run")
    if not (path / SUMMARY_FILE).is_file():
        raise Damaged("unfinished: no summary.json")
    try:
        summary = read_json(path / SUMMARY_FILE)
    except SchemaError as exc:
        raise Damaged(str(exc)) from None
    if summary.get("schema") != SCHEMA:
        raise Damaged(f"older results format: schema {summary.get('schema')!r}, current {SCHEMA}")
    missing = [key for key in REQUIRED_KEYS if not has_dotted(summary, key)]
    if missing:
        raise Damaged(f"summary.json lacks {', '.join(missing)}")
    if not isinstance(summary["config"], dict):
        raise Damaged("summary.json: config is not a table")
    return summary


def _identity(config: dict) -> dict:
    """Algorithm, setting and seed from a config, and every setting as ``config.<key>`` text (what the
    report compares runs on). A config too damaged to say gives what it can."""
    out = {CONFIG_PREFIX + key: config_text(value) for key, value in flatten(config).items()}
    part = config.get("partition") if isinstance(config.get("partition"), dict) else {}
    dataset = config.get("dataset") if isinstance(config.get("dataset"), dict) else {}
    scheme = part.get("scheme")
    try:
        level = part["classes_per_client"] if scheme == "shards" else (0.0 if scheme == "iid" else part["alpha"])
        out["level"] = float(level)
    except (KeyError, TypeError, ValueError):
        pass
    out.update({k: v for k, v in (("algorithm", config.get("algorithm")), ("dataset", dataset.get("name")),
                                  ("scheme", scheme)) if isinstance(v, str)})
    return out


def config_text(value) -> str:
    """One setting as text: strings as they are, anything else as JSON (true, 0.001, [1, 2]), so that
    a setting compares the same read from config.json or from runs.csv."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _facts(summary: dict, path: Path) -> dict:
    """The summary's numbers and provenance; Damaged when one of them is not what the schema says."""
    field = "?"
    try:
        field = "seed"
        seed = _integer(summary["seed"])
        field = "final"
        final = summary["final"]
        final_round = _integer(final["round"])
        # A run told not to evaluate the test set (eval_test = false: validation-only ablations) has none.
        tested = get_dotted(summary, "config.eval_test", True) is not False
        strict = tested and summary["status"] == "complete"  # a diverged run may lack the number
        final_acc = _number(final["test_accuracy"]) if strict else _optional_number(final["test_accuracy"])
        final_acc = math.nan if final_acc is None else final_acc
        field = "best_val"
        best = summary["best_val"]
        if best is not None and not isinstance(best, dict):
            raise TypeError("not a table")
        best = best or {}
        field = "timing.total_seconds"
        total = _number(summary["timing"]["total_seconds"])
        field = "paper_deviations"
        deviations = [str(d) for d in _list(summary["paper_deviations"])]
        field = "artifacts"
        artifacts = [str(a) for a in _list(summary["artifacts"])]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise Damaged(f"summary.json: {field} is malformed ({type(exc).__name__}: {exc})") from None
    mechanism = summary.get("mechanism") if isinstance(summary.get("mechanism"), dict) else {}
    series = mechanism.get("series") if isinstance(mechanism.get("series"), dict) else {}
    execution = summary.get("execution") if isinstance(summary.get("execution"), dict) else {}
    versions = summary.get("versions") if isinstance(summary.get("versions"), dict) else {}
    part = summary.get("partition") if isinstance(summary.get("partition"), dict) else {}
    fallback = execution.get("executor_fallback")
    return {
        "status": str(summary["status"]), "seed": seed,
        "partition_seed": _optional_int(get_dotted(summary, "config.partition.seed", None), seed),
        "final_round": final_round, "final_test_accuracy": final_acc,
        "final_val_accuracy": _optional_number(final.get("val_accuracy")),
        "final_test_loss": _optional_number(final.get("test_loss")), "tested": tested,
        "best_val_round": _optional_int(best.get("round")),
        "best_val_test_accuracy": _optional_number(best.get("test_accuracy")),
        "total_seconds": total, "revision": str(summary.get("git_revision") or ""),
        "finished": _finished(summary, path), "algorithm_title": algorithm_title(summary),
        "dataset_title": dataset_title(summary),
        "hyperparameters": hyperparameters(summary["config"]),
        "mechanism_engaged": _engaged(mechanism), "mechanism_evidence": str(mechanism.get("evidence") or ""),
        "local_steps": _series_mean(series, "train.local_steps"), "drift": _series_mean(series, "train.drift"),
        "num_classes": _optional_int(get_dotted(summary, "dataset.num_classes", None)),
        "heterogeneity": _optional_number(part.get("heterogeneity")),
        "heterogeneity_metric": str(part.get("heterogeneity_metric") or ""),
        "executor": str(execution.get("executor") or "not recorded"),
        "executor_fallback": "" if fallback is None else config_text(fallback),
        "threads": _optional_int(execution.get("threads")),
        **{key: str(versions.get(key) or "") for key in ("torch", "python", "numpy", "cpu", "cpu_capability", "gpu")},
        "paper_deviations": json.dumps(deviations), "artifacts": json.dumps(artifacts),
        "diverged_round": _optional_int((summary.get("diverged") or {}).get("round")
                                        if isinstance(summary.get("diverged"), dict) else None),
    }


def hyperparameters(config: dict) -> str:
    """The algorithm's own settings, ``key=value`` in key order ("" when it has none)."""
    table = get_dotted(config, f"algorithms.{config.get('algorithm')}", {})
    if not isinstance(table, dict):
        return ""
    return ", ".join(f"{key}={config_text(value)}" for key, value in sorted(flatten(table).items()))


def _divergence(summary: dict) -> str:
    if summary["status"] == "diverged":
        info = summary.get("diverged") if isinstance(summary.get("diverged"), dict) else {}
        return f"diverged at round {info.get('round', '?')}: {info.get('reason', 'no reason given')}"
    return f"unknown status {summary['status']!r}"


def _curves(path: Path, record: dict) -> pd.DataFrame:
    """rounds.csv and timings.csv as one long frame, after checking that rounds.csv ends where the summary
    says the run ended (a file truncated at a line boundary still parses, but lost its last rounds)."""
    split = "test" if record["tested"] else "val"
    final = record[f"final_{split}_accuracy"]
    if final is None or not math.isfinite(final):
        record["status"] = "diverged"
        raise Damaged(f"diverged: final {split} accuracy is NaN")
    missing = [name for name in (ROUNDS_FILE, TIMINGS_FILE) if not (path / name).is_file()]
    if missing:
        raise Damaged(f"missing {', '.join(missing)}")
    rounds, timings = read_long(path / ROUNDS_FILE), read_long(path / TIMINGS_FILE)
    accuracy = rounds[(rounds["split"] == split) & (rounds["metric"] == "accuracy")]
    if accuracy.empty:
        raise Damaged(f"{ROUNDS_FILE} has no {split} accuracy")
    last = accuracy.loc[accuracy["round"].idxmax()]
    if int(last["round"]) != record["final_round"]:
        raise Damaged(f"{ROUNDS_FILE} ends at round {int(last['round'])}, but summary.json's final round is "
                      f"{record['final_round']} (truncated?)")
    if not math.isclose(float(last["value"]), final, rel_tol=0, abs_tol=1e-9):
        raise Damaged(f"{ROUNDS_FILE}'s final {split} accuracy {float(last['value'])!r} is not summary.json's "
                      f"{final!r}")
    if not timings.empty and set(timings["split"]) != {"time"}:
        raise Damaged(f"{TIMINGS_FILE} holds rows whose split is not 'time'")
    return pd.concat([rounds, timings], ignore_index=True)


def read_long(path: Path) -> pd.DataFrame:
    """A rounds.csv or timings.csv (round, split, metric, value); Damaged naming the file, the line and
    what is wrong with it when the file is empty, cut off, short of fields or not numeric."""
    name = path.name
    raw = path.read_bytes()
    if not raw.strip():
        raise Damaged(f"{name} is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Damaged(f"{name} is not UTF-8 text (byte {exc.start})") from None
    lines = text.split("\n")
    header = lines[0].rstrip("\r")
    if header != ",".join(LONG_HEADER):
        raise Damaged(f"{name}: header {header[:60]!r} is not {','.join(LONG_HEADER)}")
    if not text.endswith("\n"):
        # The writer ends every row with a newline: a last line without one was cut off mid-write.
        raise Damaged(f"{name}: line {len(lines)} is cut off ({lines[-1][:60]!r}, no newline at the end)")
    body = pd.Series(lines[1:-1], dtype=str)
    if body.empty:
        raise Damaged(f"{name} has a header but no rows")
    fields = body.str.count(",") + 1
    if (fields != 4).any():
        at = int((fields != 4).to_numpy().argmax())
        raise Damaged(f"{name}: line {at + 2} has {int(fields.iloc[at])} fields, not 4 ({body.iloc[at][:60]!r})")
    frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False)
    rnd = pd.to_numeric(frame["round"], errors="coerce")
    value = pd.to_numeric(frame["value"], errors="coerce")
    bad = rnd.isna() | (rnd != rnd.round()) | (value.isna() & ~frame["value"].str.strip().str.lower().isin(NAN_WORDS))
    if bad.any():
        at = int(bad.to_numpy().argmax())
        raise Damaged(f"{name}: line {at + 2} is not numeric ({body.iloc[at][:60]!r})")
    return pd.DataFrame({"round": rnd.astype("int64"), "split": frame["split"], "metric": frame["metric"],
                         "value": value.astype("float64")})


def _class_counts(summary: dict) -> list[list[int]]:
    counts = summary["partition"]["class_counts"]
    ok = (isinstance(counts, list) and counts and all(isinstance(row, list) for row in counts)
          and len({len(row) for row in counts}) == 1 and len(counts[0]) > 0
          and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for row in counts for v in row))
    if not ok:
        raise Damaged("summary.json: partition.class_counts is not a clients x classes table of counts")
    return counts


def _partition_rows(run: str, counts: list[list[int]]) -> pd.DataFrame:
    rows = [(run, client, cls, value) for client, row in enumerate(counts) for cls, value in enumerate(row) if value]
    return pd.DataFrame(rows, columns=list(PARTITION_COLUMNS))


def _finished(summary: dict, path: Path) -> str:
    for key in FINISHED_KEYS:
        value = summary.get(key)
        if isinstance(value, str) and value:
            try:
                stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            stamp = stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
            return stamp.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mtime = (path / SUMMARY_FILE).stat().st_mtime
    return datetime.fromtimestamp(mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _engaged(mechanism: dict) -> str:
    if "engaged" not in mechanism:
        return "not recorded"
    return {True: "yes", False: "no", None: "n/a"}.get(mechanism["engaged"], "not recorded")


def _series_mean(series: dict, key: str) -> float | None:
    entry = series.get(key)
    return _optional_number(entry.get("mean")) if isinstance(entry, dict) else None


def _json_or_none(path: Path):
    try:
        data = read_json(path)
    except SchemaError:
        return None
    return data


def _integer(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{value!r} is not an integer")
    return int(value)


def _number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{value!r} is not a number")
    return float(value)


def _optional_number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _optional_int(value, default=None) -> int | None:
    try:
        return _integer(value)
    except (ValueError, TypeError, OverflowError):
        return default


def _list(value) -> list:
    if not isinstance(value, list):
        raise TypeError(f"{type(value).__name__}, not a list")
    return value
