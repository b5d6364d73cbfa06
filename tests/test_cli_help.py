"""The help a newcomer reads: `charlm --help` and the package description name every kind of model, and every
option of every command shows its default."""

import importlib
import re
from pathlib import Path

import click
import pytest
from helpers import invoke

from charlm.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
# What charlm trains, as the group's help and the package description must name it.
TASK_WORDS = ("language models", "characters or words", "truecase", "punctuate", "tag", "classifiers")


def load_command(name: str) -> click.Command:
    module_name, attr = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module_name), attr)


def leaf_commands(command: click.Command, path: str):
    """(`charlm ...` path, command) of `command` and, for a group such as `corpus`, of each subcommand."""
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from leaf_commands(sub, f"{path} {name}")
    else:
        yield path, command


def declared_default(option: click.Option):
    """The default as declared (None when there is none): `to_info_dict` reports it the same way from click 8.1
    on, where newer versions keep an internal sentinel in `option.default`."""
    return option.to_info_dict()["default"]


def has_a_default(option: click.Option) -> bool:
    """A default worth showing: anything but none and a flag's off (`is`, since 0 == False)."""
    default = declared_default(option)
    return default is not None and default is not False


def shows_its_default(option: click.Option) -> bool:
    return bool(option.show_default) or "[default:" in (option.help or "")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_with_a_default_shows_it(name):
    hidden = [
        f"{path} {'/'.join(option.opts)} (default {declared_default(option)!r})"
        for path, command in leaf_commands(load_command(name), f"charlm {name}")
        for option in command.params
        if isinstance(option, click.Option) and has_a_default(option) and not shows_its_default(option)
    ]
    assert not hidden, f"show_default=True, or '[default: ...]' in the help of a computed default: {hidden}"


def test_group_help_names_every_kind_of_model():
    result = invoke("--help")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # help text is wrapped to the terminal's width
    for word in TASK_WORDS:
        assert word in text, word


def test_package_description_names_every_kind_of_model():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    description = re.search(r'^description = "(.*)"$', pyproject, re.MULTILINE).group(1)
    for word in TASK_WORDS:
        assert word in description, word
