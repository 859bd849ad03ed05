"""OnnxRuntime on CPU: metadata, fixed-batch files, not-a-face-model and bad-file errors."""

import json

import numpy as np
import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.preprocess import ARCFACE
from edgekd.runtime import open_artifact
from edgekd.runtime.onnx_runtime import OnnxRuntime
from edgekd.runtime.onnx_session import choose_providers
from tiny_models import export_onnx, tiny_class, tiny_model

PRE = tiny_class("small").preprocess

META = {"edgekd.model": "tiny", "edgekd.method": "vanilla", "edgekd.precision": "fp32",
        "edgekd.embedding_size": "8", "edgekd.preprocess": json.dumps(PRE.to_dict())}


def batch(n, size=16):
    return np.random.default_rng(0).normal(size=(n, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    return export_onnx(tmp_path_factory.mktemp("onnx") / "tiny.onnx", metadata=META)


def test_matches_torch_and_reads_metadata(tiny_onnx):
    rt = OnnxRuntime(tiny_onnx, intra_op_threads=1, inter_op_threads=1)
    x = batch(5)
    with torch.no_grad():
        want = tiny_model("small").eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt(x), want, rtol=1e-4, atol=1e-5)
    assert rt.preprocess == PRE and rt.embedding_size == 8 and rt.precision == "fp32" and rt.device == "cpu"
    assert rt.meta["model"] == "tiny" and rt.meta["method"] == "vanilla"
    assert rt.meta["providers"] == ["CPUExecutionProvider"]
    assert open_artifact(tiny_onnx).name == "onnxruntime"


def test_fixed_batch_file_is_chunked(tmp_path):
    path = export_onnx(tmp_path / "b2.onnx", batch=2, metadata=META)
    rt = OnnxRuntime(path)
    x = batch(5)
    with torch.no_grad():
        want = tiny_model("small").eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(rt(x), want, rtol=1e-4, atol=1e-5)


def test_no_metadata_falls_back_to_arcface_with_warning(tmp_path):
    path = export_onnx(tmp_path / "plain.onnx", size=(112, 112), model=tiny_model("pool", dim=8))  # no metadata
    with pytest.warns(UserWarning, match="ArcFace"):
        rt = OnnxRuntime(path)
    assert rt.preprocess == ARCFACE and rt.embedding_size == 8
    rt2 = OnnxRuntime(path, preprocess=ARCFACE)  # the --model route passes a registry preprocess instead
    assert rt2.meta["providers"] == ["CPUExecutionProvider"]


def test_not_a_face_model(tmp_path):
    path = export_onnx(tmp_path / "wrong.onnx", metadata=META, size=(16, 16))
    with pytest.raises(EdgekdError, match=r"wrong.onnx: not a face model"):
        OnnxRuntime(path, preprocess=ARCFACE)  # 112x112 expected, file takes 16x16


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(EdgekdError, match="no such file"):
        open_artifact(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"definitely not protobuf")
    with pytest.raises(EdgekdError, match="bad.onnx: ONNX Runtime cannot load"):
        OnnxRuntime(bad)


def test_provider_choice(tiny_onnx):
    assert choose_providers("cpu", ["CPUExecutionProvider"], tiny_onnx) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CPUExecutionProvider"], tiny_onnx) == ["CPUExecutionProvider"]
    assert choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"], tiny_onnx)[0] == \
        "CUDAExecutionProvider"
    with pytest.raises(EdgekdError, match="onnxruntime-gpu"):
        choose_providers("cuda", ["CPUExecutionProvider"], tiny_onnx)
    with pytest.raises(EdgekdError, match="not available"):
        OnnxRuntime(tiny_onnx, providers=["NoSuchExecutionProvider"])
