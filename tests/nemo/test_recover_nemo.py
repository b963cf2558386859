"""The committed model.nemo (recover_nemo.py) is the served ONNX model.

Exports `triton_models/asr_streaming_nemo/1/model.nemo` with export_onnx.py's CLI into a temp
folder and compares it with the committed export: every weight bit for bit, the encoder's
outputs on random inputs and on two phone-line sentences streamed through the runtime, and
the streamed text.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "triton_models" / "asr_streaming_nemo"
sys.path.insert(0, str(MODEL))

import recover_nemo  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export")
    recover_nemo.export_cli(MODEL / "1" / "model.nemo", out)
    return out


def _initializers(path: Path) -> dict[str, np.ndarray]:
    import onnx  # type: ignore[import-not-found,unused-ignore]
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}


def test_weights_are_the_served_ones(exported: Path) -> None:
    served = _initializers(MODEL / "1" / "encoder_ctc.onnx")
    again = _initializers(exported / "encoder_ctc.onnx")
    assert set(served) == set(again)
    assert [n for n in served if not np.array_equal(served[n], again[n])] == []
    with np.load(MODEL / "1" / "frontend.npz") as a, np.load(exported / "frontend.npz") as b:
        assert {k: np.array_equal(a[k], b[k]) for k in a} == {k: True for k in a}
    assert recover_nemo.meta_diff(MODEL / "1", exported) == []


def test_outputs_and_text_match(exported: Path) -> None:
    audios = [recover_nemo.synthesized_audio("my account number is four two seven nine one"),
              recover_nemo.synthesized_audio("the amount due is twenty dollars", seed=1)]
    result = recover_nemo.compare_exports(MODEL / "1", exported, audios)
    assert result.stream_steps > 5
    assert result.random_max_diff <= recover_nemo.TOLERANCE
    assert result.stream_max_diff <= recover_nemo.TOLERANCE
    assert result.texts_a == result.texts_b
    assert result.meta_diff == [] and result.ok
    assert any(t.strip() for t in result.texts_a)


def test_a_changed_weight_is_seen(exported: Path, tmp_path: Path) -> None:
    import onnx  # type: ignore[import-not-found,unused-ignore]
    from onnx import numpy_helper

    model = onnx.load(str(exported / "encoder_ctc.onnx"))
    init = next(i for i in model.graph.initializer if i.name.startswith("onnx::MatMul_"))
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.01, init.name))
    for name in ("model.json", "frontend.npz", "tokenizer.model"):
        (tmp_path / name).write_bytes((exported / name).read_bytes())
    onnx.save(model, str(tmp_path / "encoder_ctc.onnx"))
    assert recover_nemo.random_diff(MODEL / "1", tmp_path) > recover_nemo.TOLERANCE


def test_matmul_weights_map_to_modules() -> None:
    weights = recover_nemo.onnx_weights(MODEL / "1" / "encoder_ctc.onnx")
    assert "encoder.layers.4.self_attn.linear_pos.weight" in weights
    assert "encoder.pre_encode.out.weight" in weights
    assert not [n for n in weights if n.startswith("onnx::")]
    assert weights["encoder.layers.0.feed_forward1.linear1.weight"].shape == (576, 144)
