"""``hetbench run|sweep|report|estimate|config|perf|data|partition|tune|export ...`` (also ``python -m benchmarks``)

Every user error (bad config, missing data, bad partition request, bad arguments) is printed as one line
and exits 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from benchmarks.cli.allocator import ensure_fast_allocator

COMMAND_MODULES = {
    "run": "benchmarks.cli.commands.run",
    "sweep": "benchmarks.cli.commands.sweep",
    "perf": "benchmarks.cli.commands.perf",
    "data": "benchmarks.cli.commands.data",
    "partition": "benchmarks.cli.commands.partition",
    "tune": "benchmarks.cli.commands.tune",
    "report": "benchmarks.cli.commands.report",
    "estimate": "benchmarks.cli.commands.estimate",
    "config": "benchmarks.cli.commands.config",
    "export": "benchmarks.cli.commands.export",
}


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line (argparse prints the whole usage first), exit 2."""

    def error(self, message: str):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def user_errors() -> tuple[type[BaseException], ...]:
    from benchmarks.engine.checkpoint import CheckpointError
    from benchmarks.store.rundir import ResultsError
    from benchmarks.experiments.sweep import SweepError
    from benchmarks.core.typed import ConfigError
    errors: list[type[BaseException]] = [ConfigError, ResultsError, CheckpointError, SweepError]
    for module, name in (("benchmarks.data.datasets", "DatasetError"), ("benchmarks.data.partition", "PartitionError")):
        errors.append(getattr(importlib.import_module(module), name))
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="hetbench", description=__doc__.splitlines()[0])
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
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, already printed): a code, as for any error
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return int(modules[args.command].run(args) or 0)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; unfinished ones resume from their last checkpoint next time",
              file=sys.stderr)
        return 130


def console() -> None:
    """The ``hetbench`` console script: the fast allocator, then :func:`main`."""
    if os.environ.get("HETBENCH_ALLOCATOR", "fast") == "fast":
        ensure_fast_allocator()
    sys.exit(main())
