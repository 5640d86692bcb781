"""Show every setting a run config may hold: its default, what it allows and what it does.

The output is TOML (defaults as values, the rest as comments), so it can be saved and edited into a config.
"""
from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", action="store_true", help="print every setting with its default, bounds or "
                                                            "choices and doc (what this command does)")
    parser.add_argument("--algorithm", help="show only this algorithm's [algorithms.<name>] table "
                                            "(default: every algorithm's)")


def run(args) -> int:
    from algorithms import algorithm_names, get_algorithm
    from benchmarks.core.typed import SettingInfo, settings_info
    from benchmarks.engine.settings import ExecutionConfig, RunConfig

    names = [get_algorithm(args.algorithm).name] if args.algorithm else list(algorithm_names())
    print("# hetbench run settings: defaults as values; `# allowed | doc` after each")
    rows = settings_info(RunConfig, skip=("hparams", "execution")) + settings_info(ExecutionConfig)
    # The algorithm's choices live in the registry, not in the field, which the engine declares first.
    rows = [SettingInfo(r.key, names[0] if args.algorithm else r.default, "one of " + ", ".join(algorithm_names()),
                        r.doc or "the algorithm to run; its hyperparameters go under [algorithms.<name>]")
            if r.key == "algorithm" else r for r in rows]
    lines = _toml_lines(rows, "")
    for name in names:
        cls = get_algorithm(name)
        lines.append("")
        lines.append(f"# {cls.title}" + (f": {cls.__doc__.strip().splitlines()[0]}" if cls.__doc__ else ""))
        lines += _toml_lines(settings_info(cls.Params), f"algorithms.{name}")
    print("\n".join(lines))
    return 0


def _toml_lines(rows, table: str) -> list[str]:
    """Rows as TOML: top-level keys first, then one [section] per nested table."""
    lines, section = [], None
    if table:
        lines.append(f"[{table}]")
        if not rows:
            lines.append("# (no settings)")
    for row in sorted(rows, key=lambda r: "." in r.key) if not table else rows:
        head, _, leaf = row.key.rpartition(".")
        if not table and head != (section or ""):
            section = head
            lines.append(f"[{head}]")
        value = _toml_value(row.default)
        comment = " | ".join(part for part in (row.allowed, row.doc) if part)
        lines.append(f"{leaf} = {value}  # {comment}" if value is not None else f"# {leaf} = (unset)  # {comment}")
    return lines


def _toml_value(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) or '""' for v in value) + "]"
    return repr(value)
