"""Every command's --help shows its defaults and a working example (the example is parsed here)."""
from __future__ import annotations

import shlex

import pytest

from benchmarks.cli.main import COMMAND_MODULES, EXAMPLES, build_parser, main


@pytest.mark.parametrize("command", sorted(COMMAND_MODULES))
def test_help_ends_with_an_example_that_parses(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith(f"example: {EXAMPLES[command]}")
    words = shlex.split(EXAMPLES[command])
    assert words[:2] == ["hetbench", command]
    parser, _ = build_parser()
    assert parser.parse_args(words[1:]).command == command  # a misspelt option would exit 2 here


def test_help_states_defaults_but_not_unset_ones(capsys):
    assert main(["sweep", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 1)" in out  # --jobs
    assert "(default: None)" not in out and "(default: False)" not in out


def test_a_closed_pipe_ends_the_listing_without_a_traceback():
    """`hetbench sweep SUITE --list-cells | head -1`: the reader leaves early; no traceback follows."""
    import os
    import subprocess
    import sys

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write the command makes now fails with EPIPE, as after `head` exits
    try:
        done = subprocess.run([sys.executable, "-m", "benchmarks", "sweep", "quick", "--list-cells"],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 141
