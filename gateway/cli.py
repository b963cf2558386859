"""The ``asr-gateway`` command line: parsers (each option with its help and default) and
the dispatch to the daemon, check-config, tail, probe and the Triton launcher.

Layer: shell.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gateway import __version__
from gateway.cli_help import HelpFormatter
from gateway.triton_launcher import DEFAULT_HTTP_PORT, DEFAULT_METRICS_PORT

DEFAULT_CONFIG = "/etc/asr-gateway/gateway.toml"
DESCRIPTION = """\
asr-gateway: a telephony edge gateway that streams call audio to ASR models on Triton.

  asr-gateway run --config FILE       the daemon, in the foreground (also: asr-gateway -c FILE)
  asr-gateway check-config FILE       validate a config file
  asr-gateway tail                    live transcripts and replies from a running gateway
  asr-gateway probe SIP_URI --say T   place a test call and report what came back
  asr-gateway transcribe PATH --out D transcribe stored recordings (WAV, FLAC, G.711)
  asr-gateway consent grant|withdraw|show CONVERSATION_ID   consent to use a call for training
  asr-gateway export-dataset --since T --until T --out D   consented calls -> training set
  asr-gateway triton                  the bundled Triton server, in the foreground

"asr-gateway COMMAND --help" explains each command's options.
"""
EXIT_BAD_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="asr-gateway", description=DESCRIPTION,
                                formatter_class=HelpFormatter)
    p.add_argument("--version", action="version", version=f"asr-gateway {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="run the gateway daemon in the foreground",
                         description="Run the gateway daemon in the foreground. SIGTERM/SIGINT "
                         "drain and stop it, SIGHUP reloads the config file.",
                         formatter_class=HelpFormatter)
    run.add_argument("--config", "-c", default=DEFAULT_CONFIG, type=Path, metavar="FILE",
                     help="the gateway's TOML config")
    run.add_argument("--triton-venv", type=Path, default=None, metavar="DIR",
                     help="also start a local Triton from this venv, with the models the "
                     "config names, and stop it at exit (the demo shape of make run; "
                     "default: use the Triton at triton.url)")
    run.add_argument("--model-repository", type=Path, default=Path("triton_models"),
                     metavar="DIR", help="the model repository for --triton-venv")
    run.add_argument("--triton-http-port", type=int, default=DEFAULT_HTTP_PORT, metavar="PORT",
                     help="with --triton-venv: the local Triton's HTTP port (0 = a free "
                     "one; its gRPC port is triton.url's)")
    run.add_argument("--triton-metrics-port", type=int, default=DEFAULT_METRICS_PORT,
                     metavar="PORT", help="with --triton-venv: the local Triton's Prometheus "
                     "metrics port (0 = a free one)")
    sub.add_parser("triton", help="run the bundled Triton server in the foreground "
                   "(asr-gateway triton --help for its options)", add_help=False)
    check = sub.add_parser("check-config",
                           help="validate a config file; exit 0, or 2 listing errors",
                           description="Validate a config file: exit 0 with a one-line "
                           "summary, or 2 listing every error with its key path.",
                           formatter_class=HelpFormatter)
    check.add_argument("file", type=Path, help="the TOML config to check")
    _add_tail(sub)
    _add_probe(sub)
    _add_transcribe(sub)
    _add_consent(sub)
    _add_export(sub)
    p.add_argument("--config", "-c", dest="top_config", type=Path, default=None,
                   metavar="FILE", help="shorthand for 'run --config FILE' (with no command: "
                   f"run with {DEFAULT_CONFIG})")
    return p


def build_parser() -> argparse.ArgumentParser:
    """The whole command line (``asr-gateway triton`` has its own, in triton_launcher)."""
    return _parser()


def _add_tail(sub: Any) -> None:
    from gateway.tail import DEFAULT_TYPES, RECONNECT_FOR_S

    tail = sub.add_parser("tail", help="print live transcripts, replies and call summaries "
                          "from a running gateway", formatter_class=HelpFormatter,
                          description="Follow a running gateway's /v1/events WebSocket: "
                          "transcripts (colour per channel on a terminal), DTMF, spoken "
                          "replies and a summary per call. When the gateway goes away, tail "
                          "reconnects with backoff (messages on stderr) and exits 1 if it "
                          "cannot for --reconnect-for seconds; --no-reconnect exits 1 at "
                          "once. Exit 2: the token was refused.")
    tail.add_argument("--url", default="http://127.0.0.1:8088",
                      help="the gateway's HTTP side port")
    tail.add_argument("--token-env", default="ASR_GW_HTTP_TOKEN", metavar="VAR",
                      help="environment variable holding the bearer token (http.token)")
    tail.add_argument("--call", default=None, metavar="CALL_ID",
                      help="only this call (default: every call)")
    tail.add_argument("--types", default=DEFAULT_TYPES, metavar="TYPE,TYPE",
                      help="comma-separated event types to follow")
    tail.add_argument("--no-reconnect", action="store_true",
                      help="exit 1 when the connection is lost instead of reconnecting")
    tail.add_argument("--reconnect-for", type=float, default=RECONNECT_FOR_S, metavar="S",
                      help="give up (exit 1) after this many seconds without a connection")


def _add_transcribe(sub: Any) -> None:
    from gateway.transcribe import add_parser

    add_parser(sub)


def _add_consent(sub: Any) -> None:
    from gateway.consent.cli import add_parser

    add_parser(sub, HelpFormatter)


def _add_export(sub: Any) -> None:
    from gateway.dataset.cli import add_parser

    add_parser(sub, HelpFormatter)


def _add_probe(sub: Any) -> None:
    probe = sub.add_parser("probe", help="place a test call through your SIP path and report "
                           "the transcripts the gateway sends back (needs pjsua2-python)",
                           formatter_class=HelpFormatter,
                           description="Place one real call through your SIP path, play "
                           "speech, and report the gateway's call_id, each final transcript "
                           "with its round-trip time, the reply audio that came back, and a "
                           "summary. Exit 0: transcripts came back; 1: none did; 2: setup "
                           "error (bad arguments, gateway or Triton unreachable, call "
                           "refused).")
    probe.add_argument("uri", help="where to call, e.g. sip:asr@pbx.example.com")
    speech = probe.add_mutually_exclusive_group(required=True)
    speech.add_argument("--say", metavar="TEXT", help="speak TEXT with Triton's TTS model")
    speech.add_argument("--wav", metavar="FILE", type=Path, help="play this WAV (any rate)")
    probe.add_argument("--events-url", default="http://127.0.0.1:8088",
                       help="the gateway's HTTP port (its /v1/events WebSocket)")
    probe.add_argument("--token-env", default="ASR_GW_HTTP_TOKEN", metavar="VAR",
                       help="environment variable holding the bearer token (http.token)")
    probe.add_argument("--registrar", default=None, help="call via this registrar/proxy "
                       "(sip:host:port) after registering with digest auth (default: call "
                       "the URI directly)")
    probe.add_argument("--user", default="probe", help="SIP user (and digest user)")
    probe.add_argument("--password-env", default=None, metavar="VAR",
                       help="environment variable holding the SIP password (default: no "
                       "digest auth)")
    probe.add_argument("--domain", default=None,
                       help="SIP domain of --user (default: the registrar's or URI's host)")
    probe.add_argument("--timeout-s", type=float, default=60.0,
                       help="time limit for the whole probe, in seconds")
    probe.add_argument("--header", action="append", default=[], metavar="'Name: value'",
                       help="extra INVITE header (repeatable), e.g. 'X-Leg: customer'")
    probe.add_argument("--triton-url", default="127.0.0.1:8001", help="Triton gRPC, for --say")
    probe.add_argument("--tts-model", default="tts_cpu_default", help="TTS model, for --say")
    probe.add_argument("--bind", default=None,
                       help="local SIP/RTP address (default: loopback for a local target)")
    probe.add_argument("--json", action="store_true",
                       help="print one JSON object at the end instead of lines for people")


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

        return tail.run(tail.TailOptions(
            url=args.url, token=os.environ.get(args.token_env), token_env=args.token_env,
            call_id=args.call, types=args.types, reconnect=not args.no_reconnect,
            reconnect_for_s=args.reconnect_for))
    if args.command == "probe":
        return _run_probe(args)
    if args.command == "transcribe":
        from gateway import transcribe

        return transcribe.run(args)
    if args.command == "consent":
        from gateway.consent import cli as consent_cli

        return consent_cli.run(args)
    if args.command == "export-dataset":
        from gateway.dataset import cli as dataset_cli

        return dataset_cli.run(args)
    from gateway.server import run

    if args.command == "run":
        return run(args.config, triton_venv=args.triton_venv,
                   model_repository=args.model_repository,
                   triton_ports=(args.triton_http_port, args.triton_metrics_port))
    return run(args.top_config or Path(DEFAULT_CONFIG))


if __name__ == "__main__":
    sys.exit(main())
