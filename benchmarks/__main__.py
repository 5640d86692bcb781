"""``python -m benchmarks run|sweep|estimate|perf|data|partition|tune ...``

Every user error (bad config, missing data, bad partition request) is printed as one line and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from benchmarks.allocator import ensure_fast_allocator

COMMAND_MODULES = {
    "run": "benchmarks.commands.run",
    "sweep": "benchmarks.commands.sweep",
    "perf": "benchmarks.commands.perf",
    "data": "benchmarks.commands.data",
    "partition": "benchmarks.commands.partition",
    "tune": "benchmarks.commands.tune",
    "estimate": "benchmarks.commands.estimate",
}


def user_errors() -> tuple[type[BaseException], ...]:
    from benchmarks.checkpoint import CheckpointError
    from benchmarks.results import ResultsError
    from benchmarks.sweep import SweepError
    from benchmarks.typed import ConfigError
    errors: list[type[BaseException]] = [ConfigError, ResultsError, CheckpointError, SweepError]
    for module, name in (("benchmarks.datasets", "DatasetError"), ("benchmarks.partition", "PartitionError")):
        errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, module_name in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        modules[name] = module
        module.configure(sub.add_parser(name, help=(module.__doc__ or "").strip().splitlines()[0]))
    args = parser.parse_args(argv)
    try:
        return int(modules[args.command].run(args) or 0)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; unfinished ones resume from their last checkpoint next time",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    if os.environ.get("HETBENCH_ALLOCATOR", "fast") == "fast":
        ensure_fast_allocator()
    sys.exit(main())
