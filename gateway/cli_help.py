"""The ``--help`` layout shared by every ``asr-gateway`` command: each option says its default.

Layer: pure core.
"""

from __future__ import annotations

import argparse

DEFAULT_MARK = "(default"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """``(default: X)`` is added to an option's help unless the help already names its
    default or there is none to show (None, off, empty); a description with line breaks
    keeps them, one without is wrapped."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if DEFAULT_MARK in text or "%(default)" in text:
            return text
        if action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip():
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)
