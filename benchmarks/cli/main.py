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


# One working command line per command, shown under its --help (tests parse every one of them).
EXAMPLES = {
    "run": "hetbench run --base quick --set algorithm=fedprox --set partition.alpha=0.01",
    "sweep": "hetbench sweep quick --jobs 2",
    "perf": "hetbench perf --dynafed --compare-pooling",
    "data": "hetbench data",
    "partition": "hetbench partition --base quick --alpha 0.01 --plot split.png",
    "tune": "hetbench tune --algorithm fedprox --dataset fmnist --alpha 0.04 --trials 20 --base quick",
    "report": "hetbench report quick",
    "estimate": "hetbench estimate cpu_regime --jobs 2",
    "config": "hetbench config --show --algorithm scaffold",
    "export": "hetbench export quick --tensorboard tb/",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless unset, off or already stated), the example as written."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.default not in (None, False, [], argparse.SUPPRESS) and "default" not in text
                and action.option_strings):
            text += f" (default: {action.default})"
        return text


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


def build_parser() -> tuple[OneLineParser, dict]:
    """The CLI's parser and the command modules it dispatches to."""
    parser = OneLineParser(prog="hetbench", description="Compare federated-learning algorithms under client data "
                           "heterogeneity (`python -m benchmarks` is the same).",
                           epilog="`hetbench COMMAND --help` shows a command's options, defaults and an example.")
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
        summary = " ".join((module.__doc__ or "").strip().split("\n\n")[0].split())
        module.configure(sub.add_parser(name, help=summary, description=summary, formatter_class=HelpFormatter,
                                        epilog=f"example: {EXAMPLES[name]}"))
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    parser, modules = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad argument (2, already printed): a code, as for any error
        return exc.code if isinstance(exc.code, int) else 2
    args.as_program = argv is None  # only a process started as a command may restart itself (cli.kernels)
    try:
        return int(modules[args.command].run(args) or 0)
    except user_errors() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader (`| head`) closed the pipe: nothing left to say; point stdout at /dev/null so the
        # interpreter's final flush does not raise a second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; unfinished ones resume from their last checkpoint next time",
              file=sys.stderr)
        return 130


def console() -> None:
    """The ``hetbench`` console script: the fast allocator, then :func:`main`."""
    if os.environ.get("HETBENCH_ALLOCATOR", "fast") == "fast":
        ensure_fast_allocator()
    sys.exit(main())
