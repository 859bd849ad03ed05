"""ONNX export end to end on a tiny random-init face net (tiny_models "gdc": MobileFaceNet's head structure, conv
body, GDC, flatten, FC, BatchNorm1d; a real mobilefacenet takes over a minute here): parity, dynamic batch, metadata,
FP16 / INT8 artifacts, the report, the no-TensorRT exit, and every bad input (one-line error, nothing written)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edgekd.errors import EdgekdError
from edgekd.export import graph
from edgekd.export.run import export_model
from tiny_models import register_tiny

QUIET = dict(log=lambda *a: None, progress=False)
TINY = register_tiny("gdc")  # tiny_model("gdc"): MobileFaceNet's head on a two-conv body, 32-d


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from edgekd.export.calib import make_calib

    d = tmp_path_factory.mktemp("export")
    make_calib("synthetic:8x2", d / "calib", n=16, progress=False)
    report = export_model(model=TINY, out=d / "out" / "mbf.onnx", calib=d / "calib",
                          calib_methods=("minmax",), **QUIET)
    return d / "out", report


def test_parity_and_dynamic_batch(exported):
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    out, report = exported
    p = report["parity"]
    assert p["passed"] and p["batches"] == [1, 37] and p["min_cosine"] >= 0.9999 and p["max_abs_rel"] <= 1e-3
    name, dims = graph.input_spec(graph.load(out / "mbf.onnx"))
    assert isinstance(dims[0], str) and dims[1:] == [3, 112, 112]
    rt = OnnxRuntime(out / "mbf.onnx")
    x = np.random.default_rng(0).standard_normal((37, 3, 112, 112)).astype(np.float32)
    full, one = rt(x), rt(x[:1])
    assert full.shape == (37, 32) and one.shape == (1, 32)
    np.testing.assert_allclose(full[:1], one, rtol=1e-4, atol=1e-4)
    assert report["random_init"] and "onnxslim" in report["onnx"]["simplifier"]


def test_metadata_single_file_and_report(exported):
    out, report = exported
    meta = graph.read_metadata(graph.load(out / "mbf.onnx"))
    for key in ("model", "method", "precision", "embedding_size", "preprocess", "source_sha256", "version"):
        assert key in meta, key
    assert meta["model"] == TINY and meta["precision"] == "fp32" and meta["preprocess"]["input_size"] == [112, 112]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["mbf.export_report.json", "mbf.fp16.onnx", "mbf.int8-cpu.onnx", "mbf.int8-minmax.onnx",
                     "mbf.onnx"]  # no .data, no tmp; --calib also writes the ONNX Runtime CPU INT8 file
    assert report["kind"] == "export" and report["label"]["model"] == TINY


def test_fp16_artifact(exported):
    out, report = exported
    a = report["artifacts"]["fp16"]
    m = graph.load(a["path"])
    assert graph.read_metadata(m)["precision"] == "fp16"
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # keep_io_types
    assert a["fp32_nodes"] and a["vs_fp32"]["min_cosine"] > 0.999 and a["batch1_runs"]
    fp16_inits = {i.name for i in m.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    tail = [n for n in m.graph.node if n.name in a["fp32_nodes"]]
    assert tail and not any(i in fp16_inits for n in tail for i in n.input)  # tail weights stayed FP32


def test_int8_artifact(exported):
    out, report = exported
    a = report["artifacts"]["int8-minmax"]
    m = graph.load(a["path"])
    meta = graph.read_metadata(m)
    assert meta["precision"] == "int8" and meta["calib"] == report["calib"]["sha256"]
    assert a["ops"].get("QuantizeLinear", 0) > 0 and a["trt_ops"]["ok"]  # symmetric: zero points all 0
    assert graph.first_conv(graph.load(out / "mbf.onnx")) in a["excluded_nodes"]
    assert a["vs_fp32"]["min_cosine"] > 0.9 and a["batch1_runs"]


def test_trt_without_tensorrt_exits_1_after_artifacts(tmp_path):
    """No tensorrt module: `--trt` alone is one Error line naming the extra (exit 1); with `--print-trtexec` the printed
    trtexec lines are the build (a JetPack image with trtexec but no Python bindings), so it exits 0. Either way every
    ONNX artifact is written first and no engine appears."""
    import importlib.util

    from click.testing import CliRunner

    from edgekd.cli import cli

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    out = tmp_path / "m.onnx"
    r = CliRunner().invoke(cli, ["export", "--model", TINY, "--out", str(out), "--trt", "fp16"])
    assert r.exit_code == 1
    errors = [line for line in r.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "pip install edgekd[trt-cu12]" in errors[0] and "python3-libnvinfer" in errors[0]
    assert "RANDOM INITIALISATION" in r.output
    assert out.is_file() and (tmp_path / "m.fp16.onnx").is_file() and not list(tmp_path.glob("*.engine"))

    r = CliRunner().invoke(cli, ["export", "--model", TINY, "--out", str(out), "--trt", "fp16", "--print-trtexec"])
    assert r.exit_code == 0, r.output
    assert "Error:" not in r.output and "--stronglyTyped" in r.output and "no engine built here" in r.output
    assert not list(tmp_path.glob("*.engine"))


def test_checkpoint_not_matching_model(tmp_path):
    import torch

    from edgekd.models import create_model

    sd = create_model(TINY).state_dict()
    key = next(k for k, v in sd.items() if v.ndim == 4)
    sd[key] = torch.zeros(1, 1, 1, 1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(EdgekdError) as e:
        export_model(weights=tmp_path / "bad.pt", model=TINY, out=tmp_path / "o" / "m.onnx", **QUIET)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_unwritable_output_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EdgekdError, match="file.*is a file, not an output folder"):
        export_model(model=TINY, out=tmp_path / "file" / "m.onnx", **QUIET)


def test_mismatched_calib_refused_before_writing(tmp_path):
    from edgekd.export.calib import make_calib
    from edgekd.preprocess import Preprocess

    make_calib("synthetic:2x2", tmp_path / "c", n=4, preprocess=Preprocess(mean=(0, 0, 0), std=(255, 255, 255)),
               progress=False)
    with pytest.raises(EdgekdError, match="model expects"):
        export_model(model=TINY, out=tmp_path / "o" / "m.onnx", calib=tmp_path / "c", **QUIET)
    assert not (tmp_path / "o" / "m.onnx").exists()


def test_parity_failure_writes_nothing(tmp_path, monkeypatch):
    import edgekd.export.parity as parity

    monkeypatch.setattr(parity, "torch_embed", lambda model, x: np.random.default_rng(0).standard_normal((len(x), 32)))
    with pytest.raises(EdgekdError, match="differs from PyTorch"):
        export_model(model=TINY, out=tmp_path / "m.onnx", fp16=False, **QUIET)
    assert list(tmp_path.iterdir()) == []


def test_bad_verify_data_fails_before_writing(tmp_path):
    with pytest.raises(EdgekdError, match="no such file"):
        export_model(model=TINY, out=tmp_path / "o" / "m.onnx", verify=tmp_path / "pairs.txt", **QUIET)
    assert not (tmp_path / "o" / "m.onnx").exists()



def test_non_finite_fp16_artifact_is_a_warning_naming_the_fp32_range(tmp_path, monkeypatch):
    """The export still writes every file and the report, marks the FP16 artifact non-finite and says why (this
    warning used to raise KeyError: it read a field the report never stored). ONNX Runtime's CPU kernels do not
    overflow where a GPU's FP16 does, so the FP16 file's output is made non-finite here."""
    from edgekd.runtime.onnx_runtime import OnnxRuntime

    run = OnnxRuntime._run

    def overflowing(self, x):
        y = run(self, x)
        return y * np.inf if self.artifact.name.endswith(".fp16.onnx") else y

    monkeypatch.setattr(OnnxRuntime, "_run", overflowing)
    lines = []
    report = export_model(model=TINY, out=tmp_path / "m.onnx", log=lines.append, progress=False)
    fp16 = report["artifacts"]["fp16"]
    assert fp16["finite"] is False and fp16["vs_fp32"] is None and report["artifacts"]["fp32"]["finite"] is True
    warning = [line for line in lines if line.startswith("WARNING") and "non-finite" in line]
    assert len(warning) == 1 and "m.fp16.onnx" in warning[0] and "65504" in warning[0]
    assert (tmp_path / "m.export_report.json").is_file()
