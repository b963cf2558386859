"""Command line: ``asr-gateway [run] --config FILE``, ``asr-gateway check-config FILE``."""

from __future__ import annotations

import argparse
import os
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
    run.add_argument("--triton-venv", type=Path, default=None,
                     help="also start a local Triton from this venv (the demo / make run)")
    run.add_argument("--model-repository", type=Path, default=Path("triton_models"))
    sub.add_parser("triton", help="run the bundled Triton server in the foreground "
                   "(asr-gateway triton --help for its options)", add_help=False)
    check = sub.add_parser("check-config",
                           help="validate a config file; exit 0, or 2 listing errors")
    check.add_argument("file", type=Path)
    tail = sub.add_parser("tail", help="print live transcripts from a running gateway")
    tail.add_argument("--url", default="http://127.0.0.1:8088", help="the gateway's HTTP port")
    tail.add_argument("--token-env", default="ASR_GW_HTTP_TOKEN",
                      help="environment variable holding the bearer token")
    tail.add_argument("--call", default=None, help="only this call_id")
    tail.add_argument("--types", default=None, help="comma-separated event types")
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
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["triton"]:           # its own options, parsed by the launcher
        from gateway import triton_launcher

        return triton_launcher.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return check_config(args.file)
    if args.command == "tail":
        from gateway import tail

        return tail.run(args.url, os.environ.get(args.token_env), args.call,
                        args.types or tail.DEFAULT_TYPES)
    from gateway.server import run

    if args.command == "run":
        return run(args.config, triton_venv=args.triton_venv,
                   model_repository=args.model_repository)
    return run(args.top_config or Path(DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(main())
