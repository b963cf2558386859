"""``asr-gateway --help`` and every command's ``--help``: each option explained, with its
default, and no reStructuredText markup leaking into the text."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import cli, triton_launcher
from gateway.cli_help import HelpFormatter

COMMANDS = ("run", "triton", "check-config", "tail", "probe", "transcribe", "consent",
            "export-dataset")
SKIP = (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)


def _asr_gateway() -> list[str]:
    script = Path(sys.executable).parent / "asr-gateway"
    found = script if script.exists() else shutil.which("asr-gateway")
    return [str(found)] if found else [sys.executable, "-m", "gateway"]


def _help(*args: str) -> str:
    result = subprocess.run([*_asr_gateway(), *args, "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", [(), *((c,) for c in COMMANDS)], ids=lambda c: " ".join(c)
                         or "top")
def test_help_runs_and_has_no_rst_markup(command: tuple[str, ...]) -> None:
    text = _help(*command)
    assert "``" not in text, text
    assert text.startswith("usage: asr-gateway"), text


def test_top_level_help_lists_every_command() -> None:
    text = _help()
    for command in COMMANDS:
        assert f"\n    {command} " in text or f"asr-gateway {command}" in text, command


def _parsers() -> dict[str, argparse.ArgumentParser]:
    top = cli.build_parser()
    found = {"asr-gateway": top, "asr-gateway triton": triton_launcher._parser()}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, parser in action.choices.items():
                if name != "triton":           # a placeholder: its own parser is above
                    found[f"asr-gateway {name}"] = parser
    return found


def _options() -> list[tuple[str, argparse.ArgumentParser, argparse.Action]]:
    return [(name, parser, action) for name, parser in _parsers().items()
            for action in parser._actions if not isinstance(action, SKIP)]


def test_every_command_is_covered() -> None:
    assert set(_parsers()) == {"asr-gateway", *(f"asr-gateway {c}" for c in COMMANDS)}


@pytest.mark.parametrize(("name", "parser", "action"), _options(),
                         ids=[f"{n} {a.dest}" for n, _p, a in _options()])
def test_every_option_is_explained_with_its_default(name: str, parser: argparse.ArgumentParser,
                                                    action: argparse.Action) -> None:
    assert action.help and len(action.help) > 8, f"{name} {action.dest}: no help text"
    assert parser.formatter_class is HelpFormatter, f"{name}: defaults are not shown"
    shown = HelpFormatter(name)._get_help_string(action) or ""
    if action.option_strings and action.default not in (None, False, []):
        assert "default" in shown, f"{name} {action.option_strings}: default not shown"
        if "%(default)" in shown:
            assert str(action.default) in shown % {"default": action.default}
