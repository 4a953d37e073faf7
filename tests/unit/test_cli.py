"""The CLI's pure parts: every command and option has help, and durations read right."""

from __future__ import annotations

import argparse

import pytest

from api.cli import commands as cli
from api.cli import render


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_command_and_option_has_help(name, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])

    assert exited.value.code == 0
    assert f"usage: liteshift {name}" in capsys.readouterr().out
    parser = _subcommands()[name]
    assert parser.description
    for action in parser._actions:
        assert action.help, f"{name} {action.dest} has no help text"


def test_durations_round_up_so_that_only_nothing_left_reads_0s():
    assert [render.duration(s) for s in (0, 0.3, 0.7, 59.2, 61, 3600, None, -1)] == [
        "0s", "1s", "1s", "1m00s", "1m01s", "1h00m", "-", "-"]
