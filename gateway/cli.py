"""Command line: ``asr-gateway [run] --config FILE``, ``asr-gateway check-config FILE``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway import __version__

DEFAULT_CONFIG = "/etc/asr-gateway/gateway.toml"
EXIT_BAD_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-gateway", description=__doc__)
    p.add_argument("--version", action="version", version=f"asr-gateway {__version__}")
    sub = p.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the gateway daemon in the foreground")
    run.add_argument("--config", "-c", default=DEFAULT_CONFIG, type=Path)
    check = sub.add_parser("check-config",
                           help="validate a config file; exit 0, or 2 listing errors")
    check.add_argument("file", type=Path)
    p.add_argument("--config", "-c", dest="top_config", type=Path, default=None,
                   help="shorthand for 'run --config FILE'")
    return p


def check_config(path: Path) -> int:
    from gateway.config import ConfigError, load_config

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        print(f"{path}: {len(exc.errors)} error(s):", file=sys.stderr)
        for err in exc.errors:
            print(f"  {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    accounts = ", ".join(a.name for a in cfg.sip.accounts) or "none"
    print(f"{path}: OK (sip {cfg.sip.bind_address}:{cfg.sip.port}, accounts: {accounts}, "
          f"triton {cfg.triton.url})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    from gateway.server import run

    path = args.config if args.command == "run" else (args.top_config or Path(DEFAULT_CONFIG))
    return run(path)


if __name__ == "__main__":
    sys.exit(main())
