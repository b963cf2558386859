"""Command line: ``asr-gateway [run] --config FILE``, ``asr-gateway check-config FILE``."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.triton_launcher import DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT

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
    run.add_argument("--triton-http-port", type=int, default=DEFAULT_HTTP_PORT, metavar="PORT",
                     help="with --triton-venv: the local Triton's HTTP port (0 = a free "
                     "one; its gRPC port is triton.url's)")
    run.add_argument("--triton-metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                     metavar="PORT", help="with --triton-venv: the local Triton's Prometheus "
                     "metrics port (0 = a free one)")
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
    _add_probe(sub)
    p.add_argument("--config", "-c", dest="top_config", type=Path, default=None,
                   help="shorthand for 'run --config FILE'")
    return p


def _add_probe(sub: Any) -> None:
    probe = sub.add_parser("probe", help="place a test call through your SIP path and report "
                           "the transcripts the gateway sends back (needs pjsua2-python)")
    probe.add_argument("uri", help="where to call, e.g. sip:asr@pbx.example.com")
    speech = probe.add_mutually_exclusive_group(required=True)
    speech.add_argument("--say", metavar="TEXT", help="speak TEXT with Triton's TTS model")
    speech.add_argument("--wav", metavar="FILE", type=Path, help="play this WAV (any rate)")
    probe.add_argument("--events-url", default="http://127.0.0.1:8088",
                       help="the gateway's HTTP port (its /v1/events WebSocket)")
    probe.add_argument("--token-env", default="ASR_GW_HTTP_TOKEN",
                       help="environment variable holding the bearer token")
    probe.add_argument("--registrar", default=None, help="call via this registrar/proxy "
                       "(sip:host:port) after registering with digest auth")
    probe.add_argument("--user", default="probe", help="SIP user (and digest user)")
    probe.add_argument("--password-env", default=None,
                       help="environment variable holding the SIP password")
    probe.add_argument("--domain", default=None, help="SIP domain of --user")
    probe.add_argument("--timeout-s", type=float, default=60.0, help="for the whole probe")
    probe.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                       help="extra INVITE header (repeatable), e.g. 'X-Leg: customer'")
    probe.add_argument("--triton-url", default="127.0.0.1:8001", help="Triton gRPC, for --say")
    probe.add_argument("--tts-model", default="tts_cpu_default", help="TTS model, for --say")
    probe.add_argument("--bind", default=None,
                       help="local SIP/RTP address (default: loopback for a local target)")
    probe.add_argument("--json", action="store_true", help="print one JSON object at the end")


def _run_probe(args: argparse.Namespace) -> int:
    from gateway import probe

    opts = probe.ProbeOptions(
        uri=args.uri, say=args.say, wav=args.wav, events_url=args.events_url,
        token=os.environ.get(args.token_env), registrar=args.registrar, user=args.user,
        password_env=args.password_env, domain=args.domain, timeout_s=args.timeout_s,
        headers=tuple(args.header), triton_url=args.triton_url, tts_model=args.tts_model,
        bind_address=args.bind, json_output=args.json)
    return probe.run(opts)


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
    if args.command == "probe":
        return _run_probe(args)
    from gateway.server import run

    if args.command == "run":
        return run(args.config, triton_venv=args.triton_venv,
                   model_repository=args.model_repository,
                   triton_ports=(args.triton_http_port, args.triton_metrics_port))
    return run(args.top_config or Path(DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(main())
