"""TensorRT build logic: API-generation choice and builder calls against a recording fake module (never a measured
result), sidecar fields + EVAL's mismatch check, trtexec line, the no-TensorRT path, and one real build (tensorrt).
CUDA (buffers, GPU identity) and NVML are the strict doubles of tests/doubles/."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
from onnx import TensorProto, helper

from edgekd.errors import EdgekdError
from edgekd.export import graph
from edgekd.export.tensorrt_build import build_engine, choose_api
from edgekd.export.trtexec import trtexec_command
from edgekd.preprocess import ARCFACE

import _trt_doubles


@pytest.fixture(autouse=True)
def cuda_doubles(monkeypatch, request):
    """The CUDA/NVML doubles, except for the real-TensorRT tests."""
    if "tensorrt" in request.keywords:
        yield
        return
    _trt_doubles.install(monkeypatch)
    yield
    _trt_doubles.uninstall()


def fake_trt(version: str, builder_flags: bool = True, strongly_typed: bool = True, dla_cores: int = 0):
    """A tensorrt-shaped module that records every builder call into `trt.calls`."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: list = []
    trt.calls = calls
    flags = dict(FP16="FP16", GPU_FALLBACK="GPU_FALLBACK")
    if builder_flags:
        flags["INT8"] = "INT8"
    trt.BuilderFlag = types.SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = types.SimpleNamespace(
        EXPLICIT_BATCH=0, **({"STRONGLY_TYPED": 1} if strongly_typed else {}))
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE="WORKSPACE")
    trt.DeviceType = types.SimpleNamespace(DLA="DLA", GPU="GPU")

    class Logger:
        WARNING = 2

        def __init__(self, level):
            pass

    trt.Logger = Logger
    if builder_flags:
        class IInt8EntropyCalibrator2:
            def __init__(self):
                pass

        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    class Profile:
        def set_shape(self, name, lo, opt, hi):
            calls.append(("profile", name, lo, opt, hi))

    class TimingCache:
        def serialize(self):
            return b"timing"

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", size))

        def add_optimization_profile(self, p):
            calls.append(("add_profile",))

        def set_flag(self, f):
            calls.append(("flag", f))

        def set_calibration_profile(self, p):
            calls.append(("calibration_profile",))

        def create_timing_cache(self, data):
            calls.append(("timing_cache_in", data))
            return TimingCache()

        def set_timing_cache(self, cache, ignore):
            calls.append(("set_timing_cache",))

        def get_timing_cache(self):
            return TimingCache()

        def __setattr__(self, k, v):
            calls.append(("set", k, type(v).__name__ if k == "int8_calibrator" else v))
            object.__setattr__(self, k, v)

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            pass

        def create_network(self, f):
            calls.append(("network_flags", f))
            return "network"

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls.append(("build",))
            return b"ENGINE"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse(self, data):
            calls.append(("parse", len(data)))
            return True

    trt.Builder, trt.OnnxParser = Builder, OnnxParser
    return trt


def tiny_face_onnx(path, precision="fp32", size=(112, 112), out_rank=2):
    """A minimal N x 3 x H x W -> N x 8 graph (GlobalAveragePool, Flatten, Gemm) with edgekd metadata."""
    h, w = size
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["p"], name="gap"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W"], ["embedding"], name="fc")]
    W = helper.make_tensor("W", TensorProto.FLOAT, [3, 8], np.ones(24, np.float32))
    out_shape = ["batch", 8] if out_rank == 2 else ["batch", 8, 1]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, h, w])],
                          [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_shape)], [W])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    graph.set_metadata(m, {"model": "tiny", "method": "test", "precision": precision, "embedding_size": 8,
                           "preprocess": ARCFACE.to_dict()})
    graph.save(m, path)
    return path


@pytest.mark.parametrize("version,flags,typed,expected", [
    ("8.6.1", True, False, "builder-flags"),
    ("10.0.1", True, True, "builder-flags"),
    ("10.3.0", True, True, "strongly-typed"),   # calibrator + INT8 flag deprecated since 10.1
    ("11.0.0", False, False, "strongly-typed"),  # flags removed; typing always enforced
])
def test_api_generation_choice(version, flags, typed, expected):
    assert choose_api(fake_trt(version, flags, typed)) == expected


def test_requesting_missing_api_is_an_error():
    with pytest.raises(EdgekdError, match="does not offer the builder-flags"):
        choose_api(fake_trt("11.0.0", False, False), "builder-flags")


def test_builder_flags_fp16_calls_and_sidecar(tmp_path):
    onnx_path = tiny_face_onnx(tmp_path / "m.onnx")
    trt = fake_trt("8.6.1", True, False)
    side = build_engine(onnx_path, tmp_path / "m.fp16.engine", "fp16", (1, 8, 37), 512, tmp_path / "tc", trt=trt)
    assert ("network_flags", 1) in trt.calls  # EXPLICIT_BATCH on 8.x
    assert ("flag", "FP16") in trt.calls and ("flag", "INT8") not in trt.calls
    assert ("profile", "input", (1, 3, 112, 112), (8, 3, 112, 112), (37, 3, 112, 112)) in trt.calls
    assert ("workspace", 512 << 20) in trt.calls
    assert (tmp_path / "m.fp16.engine").read_bytes() == b"ENGINE"
    assert (tmp_path / "tc").read_bytes() == b"timing"
    written = json.loads((tmp_path / "m.fp16.engine.json").read_text())
    for key in ("tensorrt_version", "cuda_version", "driver_version", "gpu_name", "compute_capability", "jetpack",
                "precision", "profile", "calib_sha256", "onnx_sha256", "build_seconds", "engine_bytes", "api_path",
                "model", "method", "preprocess", "embedding_size"):
        assert key in written, key
    assert written == side and side["api_path"] == "builder-flags" and side["engine_bytes"] == 6
    assert side["profile"]["max"] == [37, 3, 112, 112] and side["model"] == "tiny"


def test_builder_flags_int8_uses_calibrator(tmp_path):
    from edgekd.export.calib import make_calib, open_calib

    make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
    calib = open_calib(tmp_path / "calib", ARCFACE)
    onnx_path = tiny_face_onnx(tmp_path / "m.onnx")
    trt = fake_trt("8.6.1", True, False)
    side = build_engine(onnx_path, tmp_path / "m.int8.engine", "int8", calib=calib, calib_cache=tmp_path / "c", trt=trt)
    assert ("flag", "INT8") in trt.calls and ("calibration_profile",) in trt.calls
    assert ("set", "int8_calibrator", "EntropyCalibrator") in trt.calls
    assert side["calib_sha256"] == calib.sha256
    with pytest.raises(EdgekdError, match="--calib"):
        build_engine(onnx_path, tmp_path / "x.engine", "int8", trt=fake_trt("8.6.1", True, False))


def test_strongly_typed_takes_precision_from_graph(tmp_path):
    trt = fake_trt("10.3.0")
    with pytest.raises(EdgekdError, match="strongly typed fp16 build"):
        build_engine(tiny_face_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16", trt=trt)
    assert not (tmp_path / "m.engine").exists()
    side = build_engine(tiny_face_onnx(tmp_path / "h.onnx", "fp16"), tmp_path / "h.engine", trt=trt)  # graph's own
    assert ("network_flags", 2) in trt.calls  # STRONGLY_TYPED, no EXPLICIT_BATCH on 10.x
    assert not any(c[0] == "flag" for c in trt.calls)
    assert side["api_path"] == "strongly-typed" and side["precision"] == "fp16"


def test_dla_core_needs_a_dla(tmp_path):
    with pytest.raises(EdgekdError, match="DLA core 0"):
        build_engine(tiny_face_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16", dla_core=0,
                     trt=fake_trt("8.6.1", True, False))
    trt = fake_trt("8.6.1", True, False, dla_cores=2)
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16", dla_core=1, trt=trt)
    assert ("set", "DLA_core", 1) in trt.calls and ("flag", "GPU_FALLBACK") in trt.calls


def test_not_a_face_onnx_is_refused(tmp_path):
    for bad in (tiny_face_onnx(tmp_path / "a.onnx", size=(64, 64)), tiny_face_onnx(tmp_path / "b.onnx", out_rank=3)):
        with pytest.raises(EdgekdError, match="not a face model"):
            build_engine(bad, tmp_path / "x.engine", "fp16", trt=fake_trt("8.6.1", True, False))
    (tmp_path / "c.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(EdgekdError, match="not a readable ONNX"):
        build_engine(tmp_path / "c.onnx", tmp_path / "x.engine", "fp16", trt=fake_trt("8.6.1", True, False))
    assert not (tmp_path / "x.engine").exists()


def test_unsupported_op_reported_before_build(tmp_path):
    m = graph.load(tiny_face_onnx(tmp_path / "m.onnx"))
    m.graph.node[0].op_type = "Col2Im"
    graph.save(m, tmp_path / "m.onnx")
    trt = fake_trt("8.6.1", True, False)
    with pytest.raises(EdgekdError, match="Col2Im"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16", trt=trt)
    assert ("build",) not in trt.calls


def test_sidecar_mismatch_refused_by_eval_checker(tmp_path):
    from edgekd.runtime.tensorrt.sidecar import check_sidecar, read_sidecar

    engine = tmp_path / "m.fp16.engine"
    build_engine(tiny_face_onnx(tmp_path / "m.onnx"), engine, "fp16", trt=fake_trt("8.6.1", True, False))
    side = read_sidecar(engine)
    assert side["gpu_name"] == "NVIDIA GeForce RTX 4090" and side["compute_capability"] == "8.9"  # CUDA device 0
    orin = {"gpu_name": "NVIDIA Jetson Orin Nano", "compute_capability": "8.7"}
    side.update(orin)
    check_sidecar(side, engine, "8.6.1", orin)
    with pytest.raises(EdgekdError, match="built with TensorRT 8.6.1"):
        check_sidecar(side, engine, "10.3.0")
    with pytest.raises(EdgekdError, match="built for NVIDIA Jetson Orin Nano"):
        check_sidecar(side, engine, "8.6.1", {"gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})


def test_dla_build_is_static_fp16(tmp_path):
    """Defect 5 (issue 11), builder side: DLA needs min = opt = max and FP16/INT8; FP32 on DLA is refused."""
    trt = fake_trt("8.6.1", True, False, dla_cores=2)
    side = build_engine(tiny_face_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16", (1, 8, 64), dla_core=1,
                        trt=trt)
    assert ("profile", "input", (8, 3, 112, 112), (8, 3, 112, 112), (8, 3, 112, 112)) in trt.calls
    assert ("flag", "FP16") in trt.calls and ("set", "DLA_core", 1) in trt.calls and side["dla_core"] == 1
    with pytest.raises(EdgekdError, match="DLA runs fp16 or int8 only"):
        build_engine(tmp_path / "m.onnx", tmp_path / "f.engine", "fp32", dla_core=0, trt=trt)


def test_print_trtexec_without_tensorrt_exits_0(tmp_path, monkeypatch):
    """Issue 11: `edgekd build --print-trtexec` on a host with trtexec but no tensorrt module prints and exits 0,
    and leaves no empty engines folder behind."""
    import sys

    from click.testing import CliRunner

    from edgekd.cli import cli

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tiny_face_onnx(tmp_path / "m.onnx")
    res = CliRunner().invoke(cli, ["build", "--onnx", str(onnx_path), "--precision", "fp16", "--print-trtexec",
                                   "--out", str(tmp_path / "engines" / "m.fp16.engine")])
    assert res.exit_code == 0, res.output
    assert "trtexec --onnx=" in res.output and "not installed" in res.output and "edgekd[trt-cu12]" in res.output
    assert not (tmp_path / "engines").exists()
    res = CliRunner().invoke(cli, ["build", "--onnx", str(onnx_path), "--precision", "fp16",
                                   "--out", str(tmp_path / "engines" / "m.fp16.engine")])
    assert res.exit_code == 1 and "--print-trtexec" in res.output and len(res.output.strip().splitlines()) == 1


def test_trtexec_line():
    line = trtexec_command("m.onnx", "m.int8.engine", "input", (112, 112), "int8", (1, 8, 37), 1024, "tc", "c.cache", 0)
    for part in ("--onnx=m.onnx", "--saveEngine=m.int8.engine", "--minShapes=input:8x3x112x112",
                 "--optShapes=input:8x3x112x112", "--maxShapes=input:8x3x112x112", "--fp16", "--int8",
                 "--calib=c.cache", "--memPoolSize=workspace:1024M", "--timingCacheFile=tc", "--useDLACore=0",
                 "--allowGPUFallback"):  # DLA: static shape (defect 5 of issue 11)
        assert part in line.split(), part
    gpu = trtexec_command("m.onnx", "e", "input", (112, 112), "fp16", (1, 8, 37))
    assert "--minShapes=input:1x3x112x112" in gpu and "--maxShapes=input:37x3x112x112" in gpu
    typed = trtexec_command("m.fp16.onnx", "e", "input", (112, 96), "fp16", strongly_typed=True)
    assert "--stronglyTyped" in typed and "--fp16" not in typed and "input:64x3x112x96" in typed


def build_and_compare_with_onnx(tmp_path, onnx_path, typed_onnx) -> dict:
    """Build an FP16 engine into tmp_path with `build_from_onnx`, open exactly that file, compare with ONNX Runtime.
    Shared by the real-TensorRT test and its double-backed twin (test_tensorrt_contracts.py, defect 9)."""
    from edgekd.export.parity import compare, sample_faces
    from edgekd.export.run import build_from_onnx
    from edgekd.runtime.onnx_runtime import OnnxRuntime
    from edgekd.runtime.tensorrt.runner import TensorRTRuntime

    engine = tmp_path / "engines" / "m.fp16.engine"
    side = build_from_onnx(onnx_path, "fp16", out=engine, typed_onnx=typed_onnx, profile=(1, 8, 37),
                           log=lambda *a: None)
    x, _ = sample_faces(ARCFACE)
    with TensorRTRuntime(engine) as rt, OnnxRuntime(onnx_path) as ref:
        assert compare(ref(x), rt(x))["min_cosine"] > 0.999
    assert side["engine_bytes"] == engine.stat().st_size
    return side


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_onnx(tmp_path):
    """Real TensorRT: build an FP16 engine of a random mobilefacenet and compare with ONNX Runtime."""
    from edgekd.export.run import export_model

    report = export_model(model="mobilefacenet", out=tmp_path / "m.onnx", log=lambda *a: None, progress=False)
    build_and_compare_with_onnx(tmp_path, tmp_path / "m.onnx", report["artifacts"]["fp16"]["path"])


def test_build_from_onnx_paths_and_fixed_batch(tmp_path, capsys):
    from edgekd.export.run import build_from_onnx

    onnx_path = tiny_face_onnx(tmp_path / "m.onnx")
    typed = tiny_face_onnx(tmp_path / "m.fp16.onnx", "fp16")
    side = build_from_onnx(onnx_path, "fp16", typed_onnx=typed, engines_dir=tmp_path / "e", show_trtexec=True,
                           trt=fake_trt("10.3.0"))
    assert side["onnx"] == str(typed) and (tmp_path / "e" / "m.fp16.engine").is_file()
    assert "--stronglyTyped" in capsys.readouterr().out
    m = graph.load(onnx_path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph.save(m, tmp_path / "fixed.onnx")
    with pytest.raises(EdgekdError, match="batch is fixed at 1"):
        build_from_onnx(tmp_path / "fixed.onnx", "fp16", engines_dir=tmp_path / "e", trt=fake_trt("8.6.1", True, False))


def test_op_check_flags_asymmetric_qdq_and_opset():
    from edgekd.export.trt_ops import check_trt_ops

    zp = helper.make_tensor("zp", TensorProto.INT8, [], [3])
    sc = helper.make_tensor("sc", TensorProto.FLOAT, [], [0.1])
    g = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "sc", "zp"], ["q"], name="q"),
                           helper.make_node("DequantizeLinear", ["q", "sc", "zp"], ["y"], name="dq")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])], [zp, sc])
    r = check_trt_ops(helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)]))
    assert not r["ok"] and any("non-zero zero point" in p for p in r["problems"])
    assert any("opset 21" in p for p in r["problems"]) and not r["unsupported"]
