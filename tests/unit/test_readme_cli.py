"""The README's CLI section lists every command, runnable as written (no placeholders); the slow test in
tests/integration/test_readme_commands.py runs it."""
import argparse

from megatron_alignpt.cli import build_parser
from tests.readme_commands import commands


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple = ()) -> list[tuple]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _subcommands(sub, prefix + (name,))
                out += nested or [prefix + (name,)]
    return out


def test_every_command_of_the_cli_is_in_the_walkthrough():
    listed = commands()
    assert all(c.startswith("alignpt ") for c in listed), [c for c in listed if not c.startswith("alignpt ")]
    missing = [" ".join(path) for path in _subcommands(build_parser())
               if not any(c.startswith("alignpt " + " ".join(path) + " ") for c in listed)]
    assert missing == [], f"commands missing from the README's CLI section: {missing}"


def test_the_walkthrough_has_no_placeholders():
    for command in commands():
        assert "[" not in command and "..." not in command and "NAME" not in command and " DIR" not in command, command
