"""Command line of the benchmarks: one sub-command per benchmark, each writing
``<results-dir>/<name>.json`` and printing a short table."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import (
    accuracy,
    analytics,
    asr_latency,
    batch,
    capacity,
    event_stage,
    flywheel,
    redaction,
    report,
    rtp_codec,
    soak,
    stack,
    tts_latency,
)

Runner = Callable[[argparse.Namespace, Path, Path], dict[str, Any]]


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}"
                                         ) from exc
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _capacity(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("capacity", help="CPU, memory and media health per simultaneous call")
    p.add_argument("--calls", type=_int_list, default=capacity.CapacityParams().calls,
                   help="comma-separated N to measure (default 4,50,100,200)")
    p.add_argument("--with-500", action="store_true", help="also measure N=500")
    p.add_argument("--duration-s", type=float, default=20.0, help="RTP time of each call")
    p.add_argument("--idle-s", type=float, default=5.0, help="idle baseline length")
    p.add_argument("--reference-calls", type=int, default=4, choices=range(0, 5),
                   help="calls the pjsua2 reference receives (0: no reference)")
    p.add_argument("--one-leg", action="store_true",
                   help="N independent calls instead of N/2 two-leg conversations")
    p.add_argument("--chunk-ms", type=int, default=160,
                   help="the gateway's triton.chunk_ms (audio per ASR request)")
    p.set_defaults(runner=_run_capacity)


def _run_capacity(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    calls = tuple(args.calls) + ((500,) if args.with_500 and 500 not in args.calls else ())
    params = capacity.CapacityParams(calls=calls, call_duration_s=args.duration_s,
                                     idle_s=args.idle_s, reference_calls=args.reference_calls,
                                     two_legs=not args.one_leg, chunk_ms=args.chunk_ms)
    return capacity.run(params, workdir, results)


def _str_list(text: str) -> tuple[str, ...]:
    values = tuple(x.strip() for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError("expected comma-separated names")
    return values


def _variation(text: str) -> tuple[str, str, tuple[str, ...]]:
    """MODEL:KEY=V1,V2 -> (model, key, values)."""
    model, _, rest = text.partition(":")
    key, _, values = rest.partition("=")
    if not (model and key and values):
        raise argparse.ArgumentTypeError(f"expected MODEL:KEY=V1,V2, got {text!r}")
    return model.strip(), key.strip(), _str_list(values)


def _asr_latency(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("asr_latency", help="speech end -> final, speech start -> partial")
    defaults = asr_latency.LatencyParams()
    p.add_argument("--models", type=_str_list, default=defaults.models)
    p.add_argument("--calls", type=_int_list, default=defaults.concurrency,
                   help="simultaneous calls per run (default 1,10)")
    p.add_argument("--sentences-single", type=int, default=defaults.sentences_single)
    p.add_argument("--sentences-each", type=int, default=defaults.sentences_each)
    p.add_argument("--rtp", type=_str_list, default=defaults.rtp_modes,
                   help="continuous (packets in the pauses too) and/or stop_after_speech "
                        "(RTP only while speaking, none after the last sentence)")
    p.add_argument("--endpointing", type=_str_list, default=defaults.endpointing,
                   help="compare these values of a model's endpointing parameter in one run "
                        "(e.g. energy,vad; the first is the baseline of the ratios)")
    p.add_argument("--endpointing-models", type=_str_list, default=defaults.endpointing_models,
                   help="the models --endpointing applies to (default asr_cpu_default)")
    p.add_argument("--att-context", type=lambda t: tuple(x for x in t.split("/") if x),
                   default=defaults.att_contexts,
                   help="compare asr_streaming_nemo look-aheads in one run, e.g. 70,13/70,1")
    p.add_argument("--nemo-endpointing", type=_str_list, default=defaults.nemo_endpointing,
                   help="compare asr_streaming_nemo endpointing values, e.g. blank,vad (before "
                        "--att-context: a model varies in one parameter per run)")
    p.add_argument("--vary", type=_variation, action="append", default=[],
                   help="compare values of a model's config.pbtxt parameter in one run, e.g. "
                        "asr_streaming_nemo:vad_flush=off,on (repeatable; before the options "
                        "above: a model varies in one parameter per run)")
    p.add_argument("--chunk-ms", type=_int_list, default=defaults.chunk_ms,
                   help="gateway triton.chunk_ms values, each condition once per value "
                        "(default 160)")
    p.add_argument("--resampler", type=_str_list, default=defaults.resamplers,
                   help="gateway rtp.resampler values (lowdelay, soxr), each condition once "
                        "per value, e.g. soxr,lowdelay (default lowdelay)")
    p.add_argument("--stop-bound-s", type=float, default=defaults.stop_bound_s,
                   help="stop_after_speech: how long the call stays up for the last final")
    p.add_argument("--redaction", action="store_true",
                   help="keep the gateway's redaction stage on (it holds finals that end in "
                        "digits up to redaction.hold_s)")
    p.set_defaults(runner=_run_asr_latency)


def _run_asr_latency(args: argparse.Namespace, workdir: Path, results: Path
                     ) -> dict[str, Any]:
    params = asr_latency.LatencyParams(models=args.models, concurrency=args.calls,
                                       sentences_single=args.sentences_single,
                                       sentences_each=args.sentences_each,
                                       rtp_modes=args.rtp, endpointing=args.endpointing,
                                       endpointing_models=args.endpointing_models,
                                       att_contexts=args.att_context,
                                       nemo_endpointing=args.nemo_endpointing,
                                       vary=tuple(args.vary), chunk_ms=tuple(args.chunk_ms),
                                       resamplers=tuple(args.resampler),
                                       stop_bound_s=args.stop_bound_s,
                                       redaction=args.redaction)
    bad = set(params.resamplers) - {"lowdelay", "soxr"}
    if bad:
        raise SystemExit(f"--resampler: unknown value(s) {sorted(bad)}; known: lowdelay, soxr")
    unknown = set(params.rtp_modes) - set(asr_latency.RTP_MODES)
    if unknown:
        raise SystemExit(f"--rtp: unknown mode(s) {sorted(unknown)}; "
                         f"known: {', '.join(asr_latency.RTP_MODES)}")
    return asr_latency.run(params, workdir, results)


def _tts_latency(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("tts_latency", help="POST /say -> first RTP packet of the reply")
    p.add_argument("--replies", type=int, default=tts_latency.TtsParams().replies)
    p.set_defaults(runner=_run_tts_latency)


def _run_tts_latency(args: argparse.Namespace, workdir: Path, results: Path
                     ) -> dict[str, Any]:
    return tts_latency.run(tts_latency.TtsParams(replies=args.replies), workdir, results)


def _float_list(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}"
                                         ) from exc


def _accuracy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("accuracy", help="WER through the gateway vs the model fed directly")
    defaults = accuracy.AccuracyParams()
    p.add_argument("--models", type=_str_list, default=defaults.models)
    p.add_argument("--losses", type=_float_list, default=defaults.losses,
                   help="packet loss fractions injected by the sender (default 0,0.02,0.05)")
    p.add_argument("--calls-per-condition", type=int, default=defaults.calls_per_condition)
    p.add_argument("--sentences", type=int, default=defaults.sentences)
    p.add_argument("--corpora", type=_str_list, default=defaults.corpora,
                   help="sentence sets: own (each model's: general for Whisper, domain for "
                        "the small NeMo model), general, domain, heldout (multi-voice, never "
                        "in training); default own,heldout")
    p.set_defaults(runner=_run_accuracy)


def _run_accuracy(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = accuracy.AccuracyParams(models=args.models, losses=args.losses,
                                     calls_per_condition=args.calls_per_condition,
                                     sentences=args.sentences, corpora=args.corpora)
    return accuracy.run(params, workdir, results)


def _soak(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("soak", help="N calls placed continuously for T minutes")
    defaults = soak.SoakParams()
    p.add_argument("--minutes", type=float, default=defaults.minutes)
    p.add_argument("--calls", type=int, default=defaults.calls)
    p.add_argument("--duration-s", type=float, default=defaults.call_duration_s,
                   help="length of each call")
    p.add_argument("--sample-s", type=float, default=defaults.sample_s)
    p.set_defaults(runner=_run_soak)


def _run_soak(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = soak.SoakParams(minutes=args.minutes, calls=args.calls,
                             call_duration_s=args.duration_s, sample_s=args.sample_s)
    return soak.run(params, workdir, results)


def _rtp_codec(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("rtp_codec", help="per-packet RTP/RTCP codec cost: ours vs aiortc")
    defaults = rtp_codec.CodecParams()
    p.add_argument("--packets", type=int, default=defaults.packets,
                   help="calls per timing run")
    p.add_argument("--repeats", type=int, default=defaults.repeats,
                   help="timing runs per case (the best one counts)")
    p.set_defaults(runner=_run_rtp_codec)


def _run_rtp_codec(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = rtp_codec.CodecParams(packets=args.packets, repeats=args.repeats)
    return rtp_codec.run(params, workdir, results)


def _event_stage(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("event_stage",
                       help="per-event cost of the processing stage: 0, 1, 10 processors")
    defaults = event_stage.StageParams()
    p.add_argument("--events", type=int, default=defaults.events,
                   help="calls per timing run")
    p.add_argument("--repeats", type=int, default=defaults.repeats,
                   help="timing runs per case (the best one counts)")
    p.set_defaults(runner=_run_event_stage)


def _run_event_stage(args: argparse.Namespace, workdir: Path, results: Path
                     ) -> dict[str, Any]:
    params = event_stage.StageParams(events=args.events, repeats=args.repeats)
    return event_stage.run(params, workdir, results)


def _redaction(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("redaction",
                       help="PII redaction recall/precision on the corpus, time per final")
    defaults = redaction.RedactionParams()
    p.add_argument("--repeats", type=int, default=defaults.repeats,
                   help="passes of the corpus for the time per final (recall: the first)")
    p.add_argument("--calls", action="store_true",
                   help="also through real calls: piper voice, Whisper, the gateway")
    p.add_argument("--call-items", type=int, default=defaults.call_items,
                   help="corpus items spoken in call mode (2/3 with PII)")
    p.add_argument("--model", default=defaults.model, help="ASR model of the call mode")
    p.add_argument("--corpus", type=Path, default=None,
                   help="text mode on this JSONL instead (a held-out build.py --seed variant)")
    p.set_defaults(runner=_run_redaction)


def _run_redaction(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = redaction.RedactionParams(repeats=args.repeats, calls=args.calls,
                                       call_items=args.call_items, model=args.model,
                                       corpus=args.corpus)
    return redaction.run(params, workdir, results)


def _analytics(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("analytics", help="time the phrase rules add per final (200 rules)")
    defaults = analytics.AnalyticsParams()
    p.add_argument("--rules", type=int, default=defaults.rules,
                   help="rules in the set (the sample checks, then generated ones)")
    p.add_argument("--repeats", type=int, default=defaults.repeats,
                   help="passes of the corpus (the first, cold, is reported apart)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="of the generated rules")
    p.set_defaults(runner=_run_analytics)


def _run_analytics(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = analytics.AnalyticsParams(rules=args.rules, repeats=args.repeats, seed=args.seed)
    return analytics.run(params, workdir, results)


def _batch(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("batch", help="batch transcription: throughput plain vs Ray, Triton's "
                       "batching, WER vs live calls, live latency beside a batch job")
    defaults = batch.BatchParams()
    p.add_argument("--models", type=_str_list, default=defaults.models)
    p.add_argument("--concurrency", type=_int_list, default=defaults.concurrency,
                   help="files in flight per run (default 1,4,16)")
    p.add_argument("--files", type=int, default=defaults.files)
    p.add_argument("--sentences-per-file", type=int, default=defaults.sentences_per_file)
    p.add_argument("--no-ray", action="store_true", help="plain runs only")
    p.add_argument("--ray-cpus", type=int, default=defaults.ray_cpus,
                   help="CPUs of the local Ray cluster")
    p.add_argument("--job-concurrency", type=_int_list, default=defaults.job_concurrency,
                   help="the daemon's [batch] concurrency beside the live calls (default 1,4)")
    p.add_argument("--quick", action="store_true",
                   help="a short run: 16 one-sentence files, one live call per measure")
    p.set_defaults(runner=_run_batch)


def _run_batch(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = batch.BatchParams(models=args.models, concurrency=args.concurrency,
                               files=args.files, sentences_per_file=args.sentences_per_file,
                               ray=not args.no_ray, ray_cpus=args.ray_cpus,
                               job_concurrency=args.job_concurrency)
    if args.quick:
        params = batch.quick_params(params)
    return batch.run(params, workdir, results, quick=args.quick)


def _flywheel(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("flywheel", help="consented domain calls -> export -> fine-tune -> "
                       "held-out WER before/after")
    d = flywheel.FlywheelParams()
    p.add_argument("--train-sentences", type=int, default=d.train_sentences)
    p.add_argument("--heldout-sentences", type=int, default=d.heldout_sentences)
    p.add_argument("--finetune-steps", type=int, default=d.finetune_steps,
                   help="optimizer steps of the fine-tune (default 300)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--parallel-calls", type=int, default=d.parallel_calls)
    p.set_defaults(runner=_run_flywheel)


def _run_flywheel(args: argparse.Namespace, workdir: Path, results: Path) -> dict[str, Any]:
    params = flywheel.FlywheelParams(train_sentences=args.train_sentences,
                                     heldout_sentences=args.heldout_sentences,
                                     finetune_steps=args.finetune_steps, lr=args.lr,
                                     parallel_calls=args.parallel_calls)
    return flywheel.run(params, workdir, results)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--results-dir", type=Path, default=report.RESULTS_DIR,
                   help="where <name>.json goes (default bench/results)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep logs and media here (default: a temporary directory)")
    sub = p.add_subparsers(dest="name", required=True)
    _capacity(sub)
    _asr_latency(sub)
    _tts_latency(sub)
    _accuracy(sub)
    _soak(sub)
    _rtp_codec(sub)
    _event_stage(sub)
    _redaction(sub)
    _analytics(sub)
    _batch(sub)
    _flywheel(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    runner: Runner = args.runner
    with stack.workspace(args.workdir) as workdir:
        runner(args, workdir, args.results_dir)
    return 0
