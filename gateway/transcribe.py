"""``asr-gateway transcribe PATH... --out DIR``: stored recordings through the ASR models.

The command's options (:func:`add_parser`) and its run (:func:`run`): the config
(``--config``, else the defaults) with the command line's Triton URL and model, a local
Triton started from ``--triton-venv`` for the run when asked (the ``run --triton-venv``
shape: free ports, a temporary workdir, stopped at exit), then
:func:`gateway.batch.runner.run_batch` on an event loop. What a file gives, the manifest
and the exit status are :mod:`gateway.batch.runner`'s.

Layer: shell.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.cli_help import HelpFormatter

if TYPE_CHECKING:
    from gateway.batch.task import BatchOptions
    from gateway.config import GatewayConfig

EXIT_SETUP = 2
TRITON_START_S = 300.0
DESCRIPTION = """\
Transcribe stored call recordings: files, or directories searched recursively for .wav,
.flac, .ul and .al files. WAV may be PCM (8 to 32 bits), float, mu-law or A-law, at any
sample rate; raw .ul/.al are 8 kHz unless --rate says otherwise. A stereo file is the
agent (left) and the customer (right); a mono file is one channel. Audio goes to Triton as
fast as the model takes it (nothing dropped) through the same processing as live calls
(redaction, statistics, analytics rules, summary).

For each file: <out>/<path below its directory>.json (the conversation document, as for a
live call), and .vtt, .srt, .txt with --format. Files whose outputs are complete are
skipped (--force redoes them). <out>/manifest.jsonl has a line per file. Exit 0: every file
succeeded or was skipped; 1: some failed (listed on stderr); 2: nothing could start.
"""


def add_parser(sub: Any) -> None:
    """The ``transcribe`` subcommand on the CLI's subparsers."""
    p = sub.add_parser("transcribe", help="transcribe stored recordings (files or "
                       "directories) into JSON, WebVTT, SRT or text",
                       description=DESCRIPTION, formatter_class=HelpFormatter)
    p.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                   help="audio files, or directories to search recursively")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                   help="where the outputs and manifest.jsonl go")
    p.add_argument("--concurrency", "-j", type=int, default=4, metavar="N",
                   help="files transcribed at once")
    p.add_argument("--format", default="json", metavar="FMT,FMT",
                   help="outputs: json (always), vtt, srt, txt, comma-separated")
    p.add_argument("--force", action="store_true",
                   help="transcribe files whose outputs are complete again")
    p.add_argument("--config", "-c", type=Path, default=None, metavar="FILE",
                   help="a gateway TOML config ([triton], [redaction], [analytics], "
                   "[statistics] apply); default: the built-in defaults")
    triton = p.add_mutually_exclusive_group()
    triton.add_argument("--triton-url", default=None, metavar="HOST:PORT",
                        help="Triton's gRPC address (default: the config's triton.url)")
    triton.add_argument("--triton-venv", type=Path, default=None, metavar="DIR",
                        help="start a local Triton from this venv with the ASR model for "
                        "the run, on free ports, and stop it at the end")
    p.add_argument("--model-repository", type=Path, default=Path("triton_models"),
                   metavar="DIR", help="the model repository for --triton-venv")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="the ASR model (default: the config's triton.asr_model)")
    p.add_argument("--rate", type=int, default=None, metavar="HZ",
                   help="sample rate of raw .ul/.al files (default 8000)")
    p.add_argument("--left", choices=("agent", "customer"), default="agent",
                   help="who is on a stereo file's left channel (the other is on the right)")
    p.add_argument("--mono-channel", choices=("agent", "customer"), default="customer",
                   help="the channel of a mono file")
    _add_ray_options(p)


def _add_ray_options(p: Any) -> None:
    ray = p.add_argument_group("Ray (the optional 'ray' extra: pip install "
                               "'asr-gateway[ray]')")
    ray.add_argument("--ray", default=None, metavar="ADDRESS",
                     help="run the files on a Ray cluster: 'local' (one started on this "
                     "machine), 'auto', or ray://HOST:10001; inputs and --out must be the "
                     "same paths on every node (shared storage)")
    ray.add_argument("--ray-workers", type=int, default=None, metavar="N",
                     help="worker processes, each with its own Triton stream (default: one "
                     "per cluster CPU, at most --concurrency)")
    ray.add_argument("--ray-cpus", type=int, default=None, metavar="N",
                     help="with --ray local: the local cluster's CPUs (default: all)")


def run(args: argparse.Namespace) -> int:
    """The command (parsed ``args``): the exit status."""
    from gateway.batch.outputs import parse_formats
    from gateway.batch.task import BatchOptions
    from gateway.config import ConfigError

    try:
        config = _config(args)
        options = BatchOptions(formats=parse_formats(args.format), force=args.force,
                               left=args.left, mono_channel=args.mono_channel,
                               raw_rate=args.rate)
        if args.concurrency < 1:
            raise ValueError(f"--concurrency must be at least 1, not {args.concurrency}")
    except ConfigError as exc:
        print(f"transcribe: {args.config}: invalid configuration:\n{exc}", file=sys.stderr)
        return EXIT_SETUP
    except ValueError as exc:
        print(f"transcribe: {exc}", file=sys.stderr)
        return EXIT_SETUP
    from gateway.logs import configure_logging

    configure_logging("warning", config.logging.format, stream=sys.stderr)

    def body(cfg: GatewayConfig) -> int:
        return _batch(args, cfg, options)

    if args.triton_venv is not None:
        return _with_local_triton(config, args.triton_venv, args.model_repository, body)
    return body(config)


def _config(args: argparse.Namespace) -> GatewayConfig:
    from gateway.config import GatewayConfig, load_config

    config = load_config(args.config) if args.config is not None else GatewayConfig()
    triton = config.triton
    if args.triton_url is not None:
        triton = dataclasses.replace(triton, url=args.triton_url)
    if args.model is not None:
        triton = dataclasses.replace(triton, asr_model=args.model)
    return dataclasses.replace(config, triton=triton)


def _batch(args: argparse.Namespace, config: GatewayConfig, options: BatchOptions) -> int:
    import uvloop

    from gateway.batch.runner import find_files, run_batch

    jobs = find_files(args.paths)
    try:
        if args.ray is not None:
            return uvloop.run(_on_ray(args, jobs, config, options))
        return uvloop.run(run_batch(jobs, args.out, config=config, options=options,
                                    concurrency=args.concurrency, stream=sys.stderr))
    finally:
        gc.collect()   # native state (soxr, gRPC) freed while the extensions are alive


async def _on_ray(args: argparse.Namespace, jobs: Any, config: GatewayConfig,
                  options: BatchOptions) -> int:
    from gateway.batch.ray_runner import RayOptions, RayUnavailableError, run_batch_on_ray

    try:
        ray_options = RayOptions(args.ray, workers=args.ray_workers, local_cpus=args.ray_cpus)
        return await run_batch_on_ray(jobs, args.out, config=config, options=options,
                                      concurrency=args.concurrency, ray_options=ray_options,
                                      stream=sys.stderr)
    except (RayUnavailableError, ValueError) as exc:
        print(f"transcribe: {exc}", file=sys.stderr)
        return EXIT_SETUP


def _with_local_triton(config: GatewayConfig, venv: Path, repository: Path,
                       body: Callable[[GatewayConfig], int]) -> int:
    from gateway.triton_launcher import TritonLaunchError, TritonProcess

    workdir = Path(tempfile.mkdtemp(prefix="asr-gateway-transcribe-"))
    http, grpc, metrics = _free_ports(3)
    log = workdir / "triton.log"
    triton = TritonProcess(repository, venv=venv, workdir=workdir, http_port=http,
                           grpc_port=grpc, metrics_port=metrics,
                           models=[config.triton.asr_model], log_path=log)
    print(f"transcribe: starting Triton with {config.triton.asr_model} (log {log})",
          file=sys.stderr)
    try:
        triton.start(TRITON_START_S)
    except (TritonLaunchError, KeyboardInterrupt) as exc:
        triton.stop()
        print(f"transcribe: Triton did not start: {str(exc)[-2000:]}", file=sys.stderr)
        return EXIT_SETUP
    ok = False
    try:
        url = triton.grpc_url
        status = body(dataclasses.replace(
            config, triton=dataclasses.replace(config.triton, url=url)))
        ok = True
        return status
    finally:
        triton.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)


def _free_ports(count: int) -> tuple[int, ...]:
    """``count`` distinct free loopback TCP ports (held together while picked)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return tuple(int(s.getsockname()[1]) for s in sockets)
    finally:
        for s in sockets:
            s.close()
