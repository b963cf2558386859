"""asr_streaming_nemo's runtime (ONNX Runtime, numpy: 1/streaming_ctc.py, 1/rnnt_decoder.py)
against NeMo's own cache-aware streaming, token for token.

Checkpoints come from NeMo's published cache-aware FastConformer configs (CTC, transducer,
hybrid: tests/nemo/configs/) at a small size, trained look-aheads [70,13] [70,6] [70,1]
[70,0], a SentencePiece tokenizer made here and seeded random weights whose output layers
are rescaled so decoding emits varied tokens (streaming_models.liven). Each is saved as
.nemo and exported by export_onnx.py. The reference is conformer_stream_step driven by
CacheAwareStreamingAudioBuffer (NeMo's speech_to_text_cache_aware_streaming_infer.py);
the runtime streams the same audio in 160 ms requests, two streams batched together.
Equal (token, encoder frame) lists mean equal chunks too: every chunk covers fixed frames.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.nemo import streaming_models as sm

ROOT = Path(__file__).resolve().parents[2]
MODEL_DIR = ROOT / "triton_models" / "asr_streaming_nemo"
sys.path.insert(0, str(MODEL_DIR / "1"))
sys.path.insert(0, str(MODEL_DIR))

import export_onnx  # noqa: E402
from streaming_ctc import (  # noqa: E402
    RecognizerConfig,
    StreamConfigError,
    StreamingRecognizer,
    StreamInput,
    StreamState,
)

REQUEST_SAMPLES = 2560
CASES = [(kind, decoder) for kind, decoder in
         (("ctc", "ctc"), ("rnnt", "rnnt"), ("hybrid", "rnnt"), ("hybrid", "ctc"))]
MIN_TOKENS = 10
SEEDS = {"ctc": 0, "rnnt": 1, "hybrid": 2}  # other weights per kind: hybrid != rnnt + ctc
MIN_DISTINCT = 5


class Built:
    """A checkpoint, its NeMo model (loaded once) and its export."""

    def __init__(self, folder: Path, kind: str, eou: bool = False,
                 size: sm.Size = sm.SMALL, seed: int | None = None) -> None:
        from nemo.collections.asr.models import ASRModel

        self.nemo = sm.build_checkpoint(folder, kind, eou=eou, size=size,
                                        seed=SEEDS[kind] if seed is None else seed)
        self.out = folder / "export"
        export_onnx.export(self.nemo, self.out)
        self.model: Any = ASRModel.restore_from(str(self.nemo), map_location="cpu")
        self.model.eval()


class _Lazy(dict[str, Built]):
    """kind -> Built, each built on first use (a test of one kind builds only that one)."""

    def __init__(self, root: pytest.TempPathFactory) -> None:
        super().__init__()
        self._root = root

    def __missing__(self, kind: str) -> Built:
        value = self[kind] = Built(self._root.mktemp(kind), kind)
        return value


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    return _Lazy(tmp_path_factory)


def stream_runtime(folder: Path, audios: list[sm.Audio], att: list[int], decoder: str,
                   end_silence_ms: float = 1e6) -> tuple[list[StreamState], list[list[Any]]]:
    """Stream the audios side by side (one 160 ms request each per round, batched)."""
    rec = StreamingRecognizer(folder, RecognizerConfig(
        att_context_size=(att[0], att[1]), end_pad_ms=0, end_silence_ms=end_silence_ms,
        decoder=decoder, device="cpu", threads=1))
    states = [rec.new_stream() for _ in audios]
    results: list[list[Any]] = [[] for _ in audios]
    for state in states:
        state.decoder.trace = []
    longest = max(a.size for a in audios)
    for start in range(0, longest, REQUEST_SAMPLES):
        live = [i for i, a in enumerate(audios) if start < a.size]
        items = [StreamInput(states[i], audios[i][start:start + REQUEST_SAMPLES],
                             start + REQUEST_SAMPLES >= audios[i].size) for i in live]
        for i, out in zip(live, rec.process(items), strict=True):
            results[i].extend(out)
    return states, results


def reference_words(model: Any, ref: sm.Reference,
                    frame_s: float) -> list[tuple[str, float, float]]:
    """Words from NeMo's tokens by the runtime's documented rule: a word starts at a "▁"
    piece; it spans its tokens' first to last frame (+1) x frame_s."""
    pieces = model.tokenizer.ids_to_tokens(list(range(model.tokenizer.vocab_size)))
    groups: list[list[int]] = []
    for index, (tok, _frame) in enumerate(ref.tokens):
        if pieces[tok].startswith("\u2581") or not groups:
            groups.append([index])
        else:
            groups[-1].append(index)
    words = []
    for group in groups:
        text = "".join(pieces[ref.tokens[i][0]] for i in group).replace("\u2581", "")
        if text:
            words.append((text, ref.tokens[group[0]][1] * frame_s,
                          (ref.last_frames[group[-1]] + 1) * frame_s))
    return words


@pytest.mark.parametrize("att", sm.LOOKAHEADS, ids=lambda a: f"{a[0]}_{a[1]}")
@pytest.mark.parametrize(("kind", "decoder"), CASES, ids=[f"{k}-{d}" for k, d in CASES])
def test_runtime_equals_nemo_streaming(built: dict[str, Built], kind: str, decoder: str,
                                       att: list[int]) -> None:
    model = built[kind]
    audios = [sm.speechlike(4.0, seed=1), sm.speechlike(3.3, seed=2, pauses=[(1.0, 1.8)])]
    states, results = stream_runtime(model.out, audios, att, decoder)
    for state, result, audio in zip(states, results, audios, strict=True):
        ref = sm.nemo_stream(model.model, audio, att, decoder)
        assert len(ref.tokens) >= MIN_TOKENS and len({t for t, _ in ref.tokens}) >= MIN_DISTINCT
        assert state.decoder.trace == list(ref.tokens)
        finals = [r for r in result if r.type == "final"]
        assert len(finals) == 1  # no endpointing here: END's final holds everything
        got = [(w.word, w.start_s, w.end_s) for w in finals[0].words]
        want = reference_words(model.model, ref, state.decoder.spec.frame_s)
        assert [g[0] for g in got] == [w[0] for w in want]
        end_s = audio.size / sm.RATE_HZ
        assert [t for g in got for t in g[1:]] == pytest.approx(
            [min(t, end_s) for w in want for t in w[1:]], abs=1e-6)
        assert finals[0].text.split() == ref.text.split()


def test_ctc_chunks_have_nemo_frame_counts(built: dict[str, Built],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk for chunk: the runtime's encoder steps give as many frames as NeMo's chunks."""
    import streaming_ctc

    model = built["ctc"]
    audio = sm.speechlike(2.5, seed=3)
    counts = sm.count_encoder_frames(monkeypatch, streaming_ctc)
    for att in sm.LOOKAHEADS:
        ref = sm.nemo_stream(model.model, audio, att, "ctc")
        rec = StreamingRecognizer(model.out, RecognizerConfig(
            att_context_size=(att[0], att[1]), end_pad_ms=0, device="cpu", threads=1))
        counts.clear()
        rec.process([StreamInput(rec.new_stream(), audio, True)])
        assert len(counts) >= 3 and counts == list(ref.chunk_frames), att


def test_eou_token_ends_the_utterance_at_once(tmp_path: Path) -> None:
    """An RNNT model with <EOU> in its vocabulary: the runtime's tokens equal NeMo's, and
    every EOU NeMo emits after words closes an utterance there, without any silence rule
    (end_silence_ms 1e6), the token never in the text."""
    model = Built(tmp_path, "rnnt", eou=True, seed=0)
    eou = int(model.model.tokenizer.token_to_id("<EOU>"))
    audio = sm.speechlike(6.0, seed=5)
    states, results = stream_runtime(model.out, [audio], [70, 1], "rnnt")
    ref = sm.nemo_stream(model.model, audio, [70, 1], "rnnt")
    assert states[0].decoder.trace == list(ref.tokens)
    closing = 0
    words_since = False
    for tok, _frame in ref.tokens:
        if tok == eou:
            closing += words_since
            words_since = False
        else:
            words_since = True
    assert closing >= 2, ref.tokens
    finals = [r for r in results[0] if r.type == "final" and r.text]
    assert len(finals) >= closing
    assert [r.segment for r in finals] == sorted({r.segment for r in finals})
    assert all("<EOU>" not in r.text and "<eou>" not in r.text.lower() for r in finals)
    spec_eou = states[0].decoder.spec.eou_id
    assert spec_eou == eou


def test_export_errors_name_the_problem(built: dict[str, Built], tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no .nemo checkpoint at"):
        export_onnx.export(tmp_path / "missing.nemo", tmp_path / "out")
    with pytest.raises(export_onnx.ExportError, match="has no rnnt decoder"):
        export_onnx.export(built["ctc"].nemo, tmp_path / "out", decoder="rnnt")
    with pytest.raises(export_onnx.ExportError, match="unknown decoder 'tdt'"):
        export_onnx.export(built["rnnt"].nemo, tmp_path / "out", decoder="tdt")
    with pytest.raises(SystemExit, match="export_onnx: no .nemo checkpoint"):
        export_onnx.main(["--nemo", str(tmp_path / "missing.nemo"), "--out", str(tmp_path)])


def test_non_streaming_checkpoint_is_refused(tmp_path: Path) -> None:
    """An offline FastConformer (full context, non-causal convolutions) is not servable."""
    from nemo.collections.asr.models import EncDecCTCModelBPE

    cfg = sm.model_config("ctc", sm.make_tokenizer(tmp_path, 48, False), sm.SMALL)
    cfg.encoder.att_context_size = [-1, -1]
    cfg.encoder.att_context_style = "regular"
    cfg.encoder.att_context_probs = None
    cfg.encoder.conv_context_size = None
    path = tmp_path / "offline.nemo"
    EncDecCTCModelBPE(cfg=cfg).save_to(str(path))
    with pytest.raises(export_onnx.ExportError, match="not a cache-aware streaming checkpoint"):
        export_onnx.export(path, tmp_path / "out")


def test_per_utterance_normalisation_is_refused(tmp_path: Path) -> None:
    """A preprocessor normalising per utterance cannot be streamed feature for feature."""
    from nemo.collections.asr.models import EncDecCTCModelBPE

    cfg = sm.model_config("ctc", sm.make_tokenizer(tmp_path, 48, False), sm.SMALL)
    cfg.preprocessor.normalize = "per_feature"
    path = tmp_path / "per_feature.nemo"
    EncDecCTCModelBPE(cfg=cfg).save_to(str(path))
    with pytest.raises(export_onnx.ExportError, match="normalize NA"):
        export_onnx.export(path, tmp_path / "out")


def test_hybrid_export_of_one_head_and_runtime_choice(built: dict[str, Built],
                                                      tmp_path: Path) -> None:
    hybrid = built["hybrid"]
    export_onnx.export(hybrid.nemo, tmp_path / "ctc_only", decoder="ctc")
    assert not (tmp_path / "ctc_only" / "decoder_joint.onnx").exists()
    with pytest.raises(StreamConfigError, match="not in this export"):
        StreamingRecognizer(tmp_path / "ctc_only", RecognizerConfig(decoder="rnnt"))
    assert StreamingRecognizer(tmp_path / "ctc_only", RecognizerConfig()).decoder == "ctc"
    assert StreamingRecognizer(hybrid.out, RecognizerConfig()).decoder == "rnnt"
    with pytest.raises(StreamConfigError, match="decoder must be rnnt or ctc"):
        RecognizerConfig(decoder="tdt")


@pytest.mark.slow
def test_full_size_hybrid_equals_nemo(tmp_path: Path) -> None:
    """NeMo's hybrid config at its own size (17 layers x 512, about 114M parameters, the
    stt_en_fastconformer_hybrid_large_streaming architecture), RNNT head, [70,13]: about
    45 s alone, 2 min on a loaded machine (the export), so one decoder and one look-ahead."""
    model = Built(tmp_path, "hybrid", size=sm.FULL)
    audio = sm.speechlike(6.0, seed=1)
    states, results = stream_runtime(model.out, [audio], [70, 13], "rnnt")
    ref = sm.nemo_stream(model.model, audio, [70, 13], "rnnt")
    assert len(ref.tokens) >= MIN_TOKENS and len({t for t, _ in ref.tokens}) >= MIN_DISTINCT
    assert states[0].decoder.trace == list(ref.tokens)
    finals = [r for r in results[0] if r.type == "final"]
    assert finals[-1].text.split() == ref.text.split()
