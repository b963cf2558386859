"""``python -m bench.export_wer``: direct WER of two exports of asr_streaming_nemo side by
side, at several look-aheads, in one Triton (no SIP/RTP: bench accuracy's direct path).

Each (export folder, att_context_size) is a copy of ``asr_streaming_nemo`` in a temporary
model repository (bench.modelrepo's way: config.pbtxt rewritten, version folder linked) with
``model_path`` set to the folder and ``att_context_size`` set; every other parameter is the
committed config's (endpointing, end_pad_ms, phrase_boost ...). The corpora, calls and WER
are bench accuracy's (bench/accuracy.py: the sentences split over
``--calls`` streams, 8 kHz audio resampled to 16 kHz with soxr, corpus WER).

    .venv/bin/python -m bench.export_wer --export before=/tmp/old --export after=/tmp/new \\
        --att 70,13 --att 70,1 --corpora domain,heldout

Writes bench/results/export_wer.json (or ``--name``).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import report, stack
from bench.accuracy import _direct_text, corpus_wer, scripts
from bench.corpus import corpus_utterances, corpus_voices
from bench.figures import rounded
from bench.modelrepo import MODEL_REPOSITORY, _link_version_folders, with_parameter

MODEL = "asr_streaming_nemo"


def variant_repository(folder: Path, exports: dict[str, Path],
                       atts: Sequence[str]) -> dict[tuple[str, str], str]:
    """Model copies under ``folder``: (export label, att) -> served name."""
    folder.mkdir(parents=True, exist_ok=True)
    src = MODEL_REPOSITORY / MODEL
    text = (src / "config.pbtxt").read_text()
    names: dict[tuple[str, str], str] = {}
    for label, path in exports.items():
        for att in atts:
            name = f"{MODEL}_{label}_{att.replace(',', '_')}"
            config = with_parameter(text, name, "model_path", str(path.resolve()))
            config = with_parameter(config, name, "att_context_size", att)
            (folder / name).mkdir()
            (folder / name / "config.pbtxt").write_text(config)
            _link_version_folders(src, folder / name)
            names[(label, att)] = name
    return names


def run(exports: dict[str, Path], atts: Sequence[str], corpora: Sequence[str], calls: int,
        sentences: int, workdir: Path, name: str) -> dict[str, Any]:
    started_at, t0 = report.now_iso(), time.monotonic()
    names = variant_repository(workdir / "repo", exports, atts)
    spoken = {c: corpus_utterances(c)[:sentences] for c in corpora}
    per_call = {c: scripts(spoken[c], calls) for c in corpora}
    rows: list[dict[str, Any]] = []
    with stack.triton(list(names.values()), workdir / "triton", workdir / "repo") as server:
        env = report.environment(server.http_url)
        for corpus in corpora:
            for att in atts:
                for label in exports:
                    served = names[(label, att)]
                    t_row = time.monotonic()
                    pairs = [(s.reference, _direct_text(server.grpc_url, served, s, 2000 + i))
                             for i, s in enumerate(per_call[corpus])]
                    rows.append({"export": label, "att_context_size": att, "corpus": corpus,
                                 "sentences": len(spoken[corpus]),
                                 "direct_wer": rounded(corpus_wer(pairs), 4),
                                 "direct_wer_numbers_folded": rounded(
                                     corpus_wer(pairs, fold=True), 4),
                                 "seconds": round(time.monotonic() - t_row, 1),
                                 "transcripts": [{"reference": r, "hypothesis": h}
                                                 for r, h in pairs]})
    document = {"benchmark": name, "started_at": started_at,
                "duration_s": round(time.monotonic() - t0, 1), "environment": env,
                "parameters": {"exports": {k: str(v) for k, v in exports.items()},
                               "att_context_sizes": list(atts), "corpora": list(corpora),
                               "voices": {c: corpus_voices(c) + ", 8 kHz" for c in corpora},
                               "streams_per_corpus": calls, "sentences": sentences,
                               "path": "direct (tritonclient stream, 160 ms requests)"},
                "results": rows}
    report.write_result(name, document)
    report.show("direct WER per export", rows,
                ("export", "att_context_size", "corpus", "direct_wer",
                 "direct_wer_numbers_folded", "seconds"))
    return document


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--export", action="append", required=True,
                        help="label=folder of an export (model.json, ONNX, frontend.npz)")
    parser.add_argument("--att", action="append", default=[],
                        help="att_context_size, e.g. 70,13 (repeat; default 70,13 and 70,1)")
    parser.add_argument("--corpora", default="domain,heldout")
    parser.add_argument("--calls", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=36)
    parser.add_argument("--name", default="export_wer")
    args = parser.parse_args(argv)
    exports = {}
    for item in args.export:
        label, _, folder = item.partition("=")
        exports[label] = Path(folder)
    with tempfile.TemporaryDirectory(prefix="export-wer-") as tmp:
        run(exports, args.att or ["70,13", "70,1"], args.corpora.split(","), args.calls,
            args.sentences, Path(tmp), args.name)


if __name__ == "__main__":
    main()
