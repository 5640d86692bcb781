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
