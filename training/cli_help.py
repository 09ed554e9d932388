"""How ``galaxy-inspector-train`` prints an option's help: its default said once, required
options marked as such.

argparse's ``ArgumentDefaultsHelpFormatter`` appends "(default: X)" to every option, which
prints "(default: None)" on required options and on options that are off unless given, and a
second default where the help already says it in words ("processes (default: all cores)").
"""

from __future__ import annotations

import argparse

__all__ = ["OptionHelpFormatter"]


class OptionHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """"(required)" on required options; "(default: X)" only where there is a value X to say
    and the help does not already say its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.required and action.option_strings:
            return f"{text} (required)"
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):  # 0 == False: "is", not "in"
            return text
        if not (action.option_strings
                or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return text
        if isinstance(action.default, (list, tuple)):  # as it would be typed: 32 16 8
            return f"{text} (default: {' '.join(str(v) for v in action.default)})"
        return f"{text} (default: %(default)s)"
