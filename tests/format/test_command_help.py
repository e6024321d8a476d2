"""Both commands describe themselves: every subcommand and option has help text, and an unknown
option is reported with its own command's usage."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
from swupd import cli as client_cli
from swupd_server import cli as server_cli

BIN = Path(sys.executable).parent


def _undocumented(parser: argparse.ArgumentParser, where: str) -> list[str]:
    missing = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, argparse._SubParsersAction):
            helped = {a.dest for a in action._choices_actions if a.help}
            for name, sub in action.choices.items():
                if name not in helped or not sub.description:
                    missing.append(f"{where} {name}: no help or description")
                missing += _undocumented(sub, f"{where} {name}")
        elif not action.help:
            missing.append(f"{where}: {'/'.join(action.option_strings) or action.dest} has no help")
    return missing


@pytest.mark.parametrize("module,prog", [(client_cli, "swupd"), (server_cli, "swupd-server")])
def test_every_command_and_option_has_help(module, prog):
    assert _undocumented(module._parser(), prog) == []


@pytest.mark.parametrize("argv", [["swupd", "update", "--bogus"], ["swupd-server", "report", "--www", "w", "--bogus"]])
def test_an_unknown_option_shows_its_commands_usage(argv):
    r = subprocess.run([str(BIN / argv[0]), *argv[1:]], capture_output=True, text=True)
    assert r.returncode == 2
    assert f"usage: {argv[0]} {argv[1]} " in r.stderr
    assert r.stderr.strip().endswith(f"{argv[0]} {argv[1]}: error: unrecognized arguments: --bogus")
