"""``galaxy-inspector-train --help`` and every sub-command's help say what a user needs once:
required options marked, each default said once, help on every option, the overview's step
counts matching the steps it lists."""

import argparse
import re

import pytest

from training.cli import build_parser

NUMBERS = {"two": 2, "three": 3, "four": 4, "five": 5, "six": 6}


def _subparsers(parser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


PARSER = build_parser()
COMMANDS = _subparsers(PARSER)
PARSERS = {PARSER.prog: PARSER, **COMMANDS}


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_has_help_and_says_its_default_once(name):
    sub = PARSERS[name]
    text = sub.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    formatter = sub._get_formatter()
    for action in sub._actions:
        if isinstance(action, argparse._SubParsersAction):  # listed with each one's help
            continue
        assert action.help, f"{name} {action.option_strings or action.dest} has no help"
        line = formatter._expand_help(action)
        assert line.count("default") <= 1, f"{name}: {line!r}"
        if action.required and action.option_strings:
            assert line.endswith("(required)") and "default" not in line, f"{name}: {line!r}"


def test_outputs_are_required_rather_than_defaulting_into_the_shipped_models():
    for name, sub in COMMANDS.items():
        for action in sub._actions:
            if {"--out", "--bundle"} & set(action.option_strings):
                assert action.required, f"{name} {action.option_strings[0]} has a default"


def test_overview_step_counts_match_the_steps_listed():
    """Each "made in N steps" paragraph lists exactly N numbered steps, each a sub-command,
    and every sub-command is named in the overview."""
    text = PARSER.format_help()
    paragraphs = re.findall(r"made in (\w+) steps.*?\n\n(.*?)(?:\n\n|\Z)", text, re.S)
    assert len(paragraphs) == 2
    for count, body in paragraphs:
        steps = re.findall(r"^\s+(\d+)\. ([\w-]+):", body, re.M)
        assert [int(k) for k, _ in steps] == list(range(1, NUMBERS[count] + 1)), body
        assert {step for _, step in steps} <= set(COMMANDS)
    for name in COMMANDS:
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", PARSER.epilog), name
