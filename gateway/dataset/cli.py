"""``asr-gateway export-dataset --since --until --out DIR``: the command's options
(:func:`add_parser`) and its run (:func:`run`): the config (``--config``; its
``storage`` says where the documents, recordings and consent store are, ``[dataset]``
the defaults), then :func:`gateway.dataset.export.run_export`.

Exit status: 0 when every input was usable; 1 when some failed (each on stderr as
``path: reason``, and in ``export.json``; the others were exported); 2 for bad options,
a bad config or an output directory that is not empty (without ``--force``).

Layer: shell.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

EXIT_OK, EXIT_SOME_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_CONFIG = Path("/etc/asr-gateway/gateway.toml")
DESCRIPTION = """\
Export stored, consented conversations as a speech training set: segments of 10-30 s
cut at word boundaries per channel (one speaker each), 16 kHz mono FLAC or WAV, redacted
text, pseudonymous speakers, train/dev/test split by conversation with no speaker in two
splits; NeMo manifests, Lhotse recordings/supervisions and a Hugging Face audiofolder;
a dataset card (README.md), review.jsonl (the lowest-confidence segments) and
export.json (the counts). A conversation or channel without a consent grant for
--purpose, or with a withdrawal, contributes nothing.

The conversations are those whose summary document (<recordings_dir>/*.summary.json,
and the documents under each --source DIR, e.g. a batch transcription's --out) says they
started in [--since, --until). Exit 0: all inputs used; 1: some failed (listed on
stderr, the rest exported); 2: bad options or config, or --out not empty.
"""


def add_parser(sub: Any, formatter_class: type[argparse.HelpFormatter]) -> None:
    """The ``export-dataset`` subcommand on the CLI's subparsers (``formatter_class``: the
    CLI's help formatter, from the process tier)."""
    p = sub.add_parser("export-dataset", help="export consented conversations as a NeMo / "
                       "Lhotse / Hugging Face training set", description=DESCRIPTION,
                       formatter_class=formatter_class)
    p.add_argument("--config", "-c", type=Path, default=DEFAULT_CONFIG, metavar="FILE",
                   help="the gateway's TOML config (storage, consent.purpose, [dataset])")
    p.add_argument("--since", required=True, metavar="TIME",
                   help="first conversation start included: ISO 8601 date or time (UTC "
                   "unless it has a zone), e.g. 2026-12-01 or 2026-12-01T09:00+01:00")
    p.add_argument("--until", required=True, metavar="TIME",
                   help="conversations starting before this time (excluded)")
    p.add_argument("--out", "-o", type=Path, required=True, metavar="DIR",
                   help="the dataset directory (must be empty or new, unless --force)")
    p.add_argument("--source", type=Path, action="append", default=[], metavar="DIR",
                   help="another tree of conversation documents (repeatable), e.g. a "
                   "batch transcription's --out; recordings_dir is always searched")
    p.add_argument("--purpose", default=None, metavar="NAME",
                   help="the consent purpose required (default: consent.purpose, else "
                   "asr_training)")
    p.add_argument("--formats", default="nemo,lhotse,hf", metavar="FMT,FMT",
                   help="manifests to write: nemo, lhotse, hf (comma-separated)")
    p.add_argument("--audio-format", choices=("flac", "wav"), default=None,
                   help="segment audio (default: dataset.audio_format, flac)")
    p.add_argument("--redacted", choices=("drop", "tone"), default=None,
                   help="segments with a redacted span: drop them, or keep them with the "
                   "recording's tone and the tag in the text (default: dataset.redacted)")
    p.add_argument("--min-s", type=float, default=None, metavar="S",
                   help="wanted segment length, seconds (default: dataset.min_s, 10)")
    p.add_argument("--max-s", type=float, default=None, metavar="S",
                   help="longest segment, seconds (default: dataset.max_s, 30)")
    p.add_argument("--corrections", type=Path, default=None, metavar="FILE",
                   help="reviewers' corrections to apply (default: <out>/corrections.jsonl "
                   "when it exists)")
    p.add_argument("--review-n", type=int, default=50, metavar="N",
                   help="segments in review.jsonl (the lowest ASR confidence first)")
    p.add_argument("--force", action="store_true",
                   help="replace an earlier export's files in --out")


def _purpose(args: argparse.Namespace, config: Any) -> str:
    if args.purpose:
        return str(args.purpose)
    consent = getattr(config, "consent", None)
    return str(getattr(consent, "purpose", "") or "asr_training")


def _options(args: argparse.Namespace, config: Any) -> Any:
    from gateway.dataset.export import ExportOptions
    from gateway.dataset.formats import parse_formats
    from gateway.dataset.sources import parse_time

    ds = config.dataset
    return ExportOptions(
        since=parse_time(args.since), until=parse_time(args.until), out=args.out,
        sources=tuple(args.source), purpose=_purpose(args, config),
        formats=parse_formats(args.formats),
        audio_format=args.audio_format or ds.audio_format,
        redacted=cast(Any, args.redacted or ds.redacted),
        min_s=args.min_s if args.min_s is not None else ds.min_s,
        max_s=args.max_s if args.max_s is not None else ds.max_s,
        force=args.force, corrections=args.corrections, review_n=args.review_n)


def _error(message: str) -> int:
    print(f"export-dataset: {message}", file=sys.stderr)
    return EXIT_USAGE


def run(args: argparse.Namespace) -> int:
    from gateway.config import ConfigError, load_config
    from gateway.dataset.export import UsageError, run_export

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _error("; ".join(exc.errors))
    except OSError as exc:
        return _error(f"{args.config}: {exc}")
    try:
        options = _options(args, config)
        report = run_export(config, options, now=datetime.now(UTC), progress=lambda line:
                            print(line, file=sys.stderr, flush=True))
    except (UsageError, ValueError) as exc:
        return _error(str(exc))
    for problem in report.failed:
        print(f"{problem.path}: {problem.reason}", file=sys.stderr)
    summary = report.to_dict(options)
    print(f"exported {summary['conversations']['exported']} of "
          f"{summary['conversations']['found']} conversations "
          f"({report.excluded_no_consent} without consent, {report.excluded_withdrawn} "
          f"withdrawn, {len(report.failed)} inputs failed): {len(report.items)} segments, "
          f"{sum(i.duration_s for i in report.items) / 3600:.3f} h in {options.out}")
    return EXIT_SOME_FAILED if report.failed else EXIT_OK
