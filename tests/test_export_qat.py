"""Teacher-guided QAT on a tiny conv model: the loss decreases, the ONNX runs in ONNX Runtime with zero
zero-points, the float layers stay float, and the CLI's bad inputs are one line."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgekd.export.calib import make_calib, open_calib
from tiny_models import export_edgekd, tiny_class, tiny_model

PRE = tiny_class("convface").preprocess


def _as_written(path, x):
    """Q/DQ executed as written (what TensorRT computes), not ORT's fused x86 kernels."""
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    s = ort.InferenceSession(str(path), o, providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat")
    make_calib("synthetic:64x2:5", root / "faces", n=96, preprocess=PRE, progress=False)
    return open_calib(root / "faces")


def test_qat_loss_decreases_and_onnx_has_zero_zero_points(faces, tmp_path, one_torch_thread):
    import copy

    from edgekd.export.int8 import zero_points_zero
    from edgekd.export.qat import train_qat
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    student = tiny_model("convface").eval()
    teacher = copy.deepcopy(student)
    meta = {"model": "convface", "precision": "fp32", "embedding_size": 16,
            "preprocess": PRE.to_dict()}
    out = tmp_path / "qat.onnx"
    r = train_qat(student, teacher, faces, out, meta, steps=40, seed=0, batch_size=16, lr=2e-5, progress=False)
    assert r["loss_last"] < r["loss_first"]  # fake-quant noise is trained away
    assert r["fake_quantized_layers"] == 5  # six convs + linear, minus first conv and the tail (linear)
    m = onnx.load(str(out))
    qs = [n for n in m.graph.node if n.op_type == "QuantizeLinear"]
    assert qs and zero_points_zero(m)
    x = next(faces.batches(8))
    e = OnnxRuntime(out)(x)  # ORT's own fused kernels run it
    assert e.shape == (8, 16) and np.isfinite(e).all()
    e = _as_written(out, x)
    assert e.shape == (8, 16) and np.isfinite(e).all()
    # the QAT file is closer to its teacher than PTQ of the untouched model on the same faces
    import torch

    from edgekd.export.int8 import quantize_int8

    with torch.no_grad():
        t = teacher(torch.from_numpy(x)).numpy()
    ptq = tmp_path / "ptq.onnx"
    quantize_int8(export_edgekd(tmp_path / "fp32.onnx", teacher), ptq, faces)
    cos = lambda a, b: float(np.mean(np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)))
    assert cos(e, t) > cos(_as_written(ptq, x), t)


def test_qat_cli_bad_inputs_are_one_line(tmp_path, shared_data):  # the named model's weights are shared data
    from click.testing import CliRunner

    from edgekd.cli import cli

    # a malformed value is a usage error (exit 2), a missing input an input error (exit 1)
    for args, msg, status in ((["--steps", "0"], "'--steps': 0 is not in the range", 2),
                              (["--data", str(tmp_path / "nope")], "nope", 1)):
        base = ["qat", "--model", "mobilefacenet_ms1m_foamliu", "--data", str(tmp_path), "--out",
                str(tmp_path / "q.onnx")]
        res = CliRunner().invoke(cli, base + args)
        errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
        assert res.exit_code == status and len(errors) == 1 and msg in errors[0], res.output


@pytest.mark.parametrize("method", ["minmax", "percentile"])
def test_fake_quant_matches_the_written_qdq_file(faces, tmp_path, one_torch_thread, method):
    """Training sees what is shipped: the fake-quantized model, untrained, computes what the Q/DQ file (run as
    written) computes; the plain FP32 model does not (control)."""
    import torch

    from edgekd.export.int8 import quantize_int8
    from edgekd.export.qat import fake_quantized

    model = tiny_model("convface").eval()
    meta = {"model": "convface", "precision": "fp32", "embedding_size": 16,
            "preprocess": PRE.to_dict()}
    gm, _, floating, names = fake_quantized(model, faces, meta, method=method)
    assert len(names) == 5 and floating
    qdq = tmp_path / "ptq.onnx"
    quantize_int8(export_edgekd(tmp_path / "fp32.onnx", model), qdq, faces, method=method)
    x = next(faces.batches(16))
    with torch.no_grad():
        fq, fp = gm(torch.from_numpy(x)).numpy(), model(torch.from_numpy(x)).numpy()
    written = _as_written(qdq, x)
    scale = np.abs(written).max()
    assert np.abs(fq - written).max() < 0.01 * scale  # measured 0.002-0.003: float rounding at a few ties
    assert np.abs(fp - written).max() > 5 * np.abs(fq - written).max()  # FP32 itself: ~0.025
