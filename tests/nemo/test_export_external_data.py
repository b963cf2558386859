"""export_onnx.place_graph: a graph the exporter wrote with external data (one file per
tensor, as torch.onnx does past protobuf's 2 GB, e.g. the 0.6B FastConformer encoder) is
placed as `<name>.onnx` + one `<name>.onnx.data`, the tensor files removed, and ONNX Runtime
runs it from there; a plain graph is only moved. (The 0.6B export itself:
bench/fastconformer_sizes.py, minutes and 10 GB of disk.)"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "triton_models" / "asr_streaming_nemo"))

import export_onnx  # noqa: E402


def _graph(external: bool, folder: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """y = x @ W + C (C a Constant node's tensor attribute), saved into `folder`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(64, 32)).astype(np.float32)
    const = rng.normal(size=(32,)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(const, "c")),
         helper.make_node("MatMul", ["x", "w"], ["xw"]),
         helper.make_node("Add", ["xw", "c"], ["y"])],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 32])],
        initializer=[numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "m.onnx"
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=False, size_threshold=0,
                        convert_attribute=True)
    else:
        onnx.save_model(model, str(path))
    return path, weight, const


def _run(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.asarray(session.run(None, {"x": x})[0])


@pytest.mark.parametrize("external", [True, False], ids=["external", "inline"])
def test_place_graph(tmp_path: Path, external: bool) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    src, weight, const = _graph(external, work)
    if external:
        assert len(list(work.iterdir())) == 3  # graph + one file per tensor (w, c)
    out.mkdir()
    export_onnx.place_graph(src, out / "encoder.onnx")
    assert list(work.iterdir()) == []
    names = sorted(p.name for p in out.iterdir())
    assert names == (["encoder.onnx", "encoder.onnx.data"] if external else ["encoder.onnx"])
    x = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)
    np.testing.assert_allclose(_run(out / "encoder.onnx", x), x @ weight + const, rtol=1e-5,
                               atol=1e-5)
