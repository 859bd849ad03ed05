"""TensorRT build logic: API-generation choice and builder calls against the strict doubles of tests/doubles/
(TensorRT per generation, CUDA, NVML: the only fake TensorRT; never a measured result), sidecar fields + EVAL's
mismatch check, trtexec lines (checked with the trtexec double), the no-TensorRT path, and one real build (tensorrt)."""

from __future__ import annotations

import json

import pytest
from onnx import TensorProto, helper

from edgekd.errors import EdgekdError
from edgekd.export import graph
from edgekd.export.tensorrt_build import build_engine, choose_api
from edgekd.export.trtexec import trtexec_command
from edgekd.preprocess import ARCFACE
from tiny_models import tiny_onnx


@pytest.fixture(autouse=True)
def _on_the_doubles(request):
    """Every test here runs on the strict doubles (`one_machine` of conftest.py, its default machine installed; the
    trtexec double importable), except the real-TensorRT ones."""
    if "tensorrt" not in request.keywords:
        request.getfixturevalue("one_machine")()


def trt_module():
    import tensorrt

    return tensorrt


@pytest.mark.parametrize("version,expected", [
    ("8.6.1", "builder-flags"),
    ("10.0.1", "builder-flags"),
    ("10.3.0", "strongly-typed"),  # calibrator + INT8 flag deprecated since 10.1
    ("11.4.0", "strongly-typed"),  # flags removed; typing always enforced
])
def test_api_generation_choice(one_machine, version, expected):
    one_machine(trt_version=version)
    assert choose_api(trt_module()) == expected


def test_requesting_missing_api_is_an_error(one_machine):
    one_machine(trt_version="11.4.0")
    with pytest.raises(EdgekdError, match="does not offer the builder-flags"):
        choose_api(trt_module(), "builder-flags")


def test_builder_flags_fp16_calls_and_sidecar(tmp_path, one_machine):
    state = one_machine(trt_version="8.6.1")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    side = build_engine(onnx_path, tmp_path / "m.fp16.engine", "fp16", (1, 8, 37), 512, tmp_path / "tc")
    (b,) = state.builds
    assert b["network_flags"] == 1  # EXPLICIT_BATCH on 8.x
    assert "FP16" in b["flags"] and "INT8" not in b["flags"] and b["header"]["precision"] == "fp16"
    assert b["header"]["profile"] == [[1, 3, 112, 112], [8, 3, 112, 112], [37, 3, 112, 112]]
    assert b["workspace"] == 512 << 20 and b["timing_cache"]
    assert (tmp_path / "m.fp16.engine").read_bytes().startswith(b"FAKE-TRT-ENGINE")
    assert (tmp_path / "tc").read_bytes().startswith(b"FAKE-TIMING-CACHE 8.6.1|")
    written = json.loads((tmp_path / "m.fp16.engine.json").read_text())
    for key in ("tensorrt_version", "cuda_version", "driver_version", "gpu_name", "compute_capability", "jetpack",
                "precision", "profile", "calib_sha256", "onnx_sha256", "build_seconds", "engine_bytes", "api_path",
                "model", "method", "preprocess", "embedding_size"):
        assert key in written, key
    assert written == side and side["api_path"] == "builder-flags"
    assert side["engine_bytes"] == (tmp_path / "m.fp16.engine").stat().st_size
    assert side["profile"]["max"] == [37, 3, 112, 112] and side["model"] == "tiny"


def test_builder_flags_int8_uses_calibrator(tmp_path, one_machine):
    from edgekd.export.calib import make_calib, open_calib

    state = one_machine(trt_version="8.6.1")
    make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
    calib = open_calib(tmp_path / "calib", ARCFACE)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    side = build_engine(onnx_path, tmp_path / "m.int8.engine", "int8", calib=calib, calib_cache=tmp_path / "c")
    (b,) = state.builds
    assert "INT8" in b["flags"] and b["header"]["int8_scales"] == "calibrated"
    assert side["calib_sha256"] == calib.sha256 and (tmp_path / "c").is_file()
    with pytest.raises(EdgekdError, match="--calib"):
        build_engine(onnx_path, tmp_path / "x.engine", "int8")


def test_strongly_typed_takes_precision_from_graph(tmp_path, one_machine):
    state = one_machine(trt_version="10.3.0")
    with pytest.raises(EdgekdError, match="strongly typed fp16 build"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16")
    assert not (tmp_path / "m.engine").exists()
    half = tiny_onnx(tmp_path / "h.onnx", precision="fp16")
    from edgekd.export.fp16 import convert_fp16

    convert_fp16(half, half)
    side = build_engine(half, tmp_path / "h.engine")  # the graph's own precision
    (b,) = state.builds
    assert b["network_flags"] == 2  # STRONGLY_TYPED, no EXPLICIT_BATCH on 10.x
    assert not {"FP16", "INT8"} & set(b["flags"]) and b["header"]["precision"] == "fp16"
    assert side["api_path"] == "strongly-typed" and side["precision"] == "fp16"


def test_dla_core_needs_a_dla(tmp_path, one_machine):
    one_machine(trt_version="8.6.1")
    with pytest.raises(EdgekdError, match="DLA core 0"):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16", dla_core=0)
    state = one_machine(trt_version="8.6.1", dla_cores=2, profile="jetson")
    build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16", dla_core=1)
    (b,) = state.builds
    assert b["header"]["dla_core"] == 1 and "GPU_FALLBACK" in b["flags"]


def test_not_a_face_onnx_is_refused(tmp_path, one_machine):
    one_machine(trt_version="8.6.1")
    for bad in (tiny_onnx(tmp_path / "a.onnx", size=(64, 64), preprocess=ARCFACE),  # 64x64 graph, 112x112 metadata
                tiny_onnx(tmp_path / "b.onnx", out_rank=3)):
        with pytest.raises(EdgekdError, match="not a face model"):
            build_engine(bad, tmp_path / "x.engine", "fp16")
    (tmp_path / "c.onnx").write_bytes(b"not onnx at all")
    with pytest.raises(EdgekdError, match="not a readable ONNX"):
        build_engine(tmp_path / "c.onnx", tmp_path / "x.engine", "fp16")
    assert not (tmp_path / "x.engine").exists()


def test_unsupported_op_reported_before_build(tmp_path, one_machine):
    state = one_machine(trt_version="8.6.1")
    m = graph.load(tiny_onnx(tmp_path / "m.onnx"))
    m.graph.node[0].op_type = "Col2Im"
    graph.save(m, tmp_path / "m.onnx")
    with pytest.raises(EdgekdError, match="Col2Im"):
        build_engine(tmp_path / "m.onnx", tmp_path / "m.engine", "fp16")
    assert not state.builds


def test_sidecar_mismatch_refused_by_eval_checker(tmp_path, one_machine):
    from edgekd.runtime.tensorrt.sidecar import check_sidecar, read_sidecar

    one_machine(trt_version="8.6.1")
    engine = tmp_path / "m.fp16.engine"
    build_engine(tiny_onnx(tmp_path / "m.onnx"), engine, "fp16")
    side = read_sidecar(engine)
    assert side["gpu_name"] == "NVIDIA GeForce RTX 4090" and side["compute_capability"] == "8.9"  # CUDA device 0
    orin = {"gpu_name": "NVIDIA Jetson Orin Nano", "compute_capability": "8.7"}
    side.update(orin)
    check_sidecar(side, engine, "8.6.1", orin)
    with pytest.raises(EdgekdError, match="built with TensorRT 8.6.1"):
        check_sidecar(side, engine, "10.3.0")
    with pytest.raises(EdgekdError, match="built for NVIDIA Jetson Orin Nano"):
        check_sidecar(side, engine, "8.6.1", {"gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})


def test_dla_build_is_static_fp16(tmp_path, one_machine):
    """Defect 5 (issue 11), builder side: DLA needs min = opt = max and FP16/INT8; FP32 on DLA is refused."""
    state = one_machine(trt_version="8.6.1", dla_cores=2, profile="jetson")
    side = build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp16", (1, 8, 64), dla_core=1)
    (b,) = state.builds
    assert b["header"]["profile"] == [[8, 3, 112, 112]] * 3 and not b["header"]["gpu_fallback_layers"]
    assert "FP16" in b["flags"] and b["header"]["dla_core"] == 1 and side["dla_core"] == 1
    with pytest.raises(EdgekdError, match="DLA runs fp16 or int8 only"):
        build_engine(tmp_path / "m.onnx", tmp_path / "f.engine", "fp32", dla_core=0)


def test_print_trtexec_without_tensorrt_exits_0(tmp_path, monkeypatch):
    """Issue 11: `edgekd build --print-trtexec` on a host with trtexec but no tensorrt module prints and exits 0,
    and leaves no empty engines folder behind."""
    import sys

    from click.testing import CliRunner

    from edgekd.cli import cli

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    res = CliRunner().invoke(cli, ["build", "--onnx", str(onnx_path), "--precision", "fp16", "--print-trtexec",
                                   "--out", str(tmp_path / "engines" / "m.fp16.engine")])
    assert res.exit_code == 0, res.output
    assert "trtexec --onnx=" in res.output and "not installed" in res.output and "edgekd[trt-cu12]" in res.output
    assert not (tmp_path / "engines").exists()
    res = CliRunner().invoke(cli, ["build", "--onnx", str(onnx_path), "--precision", "fp16",
                                   "--out", str(tmp_path / "engines" / "m.fp16.engine")])
    assert res.exit_code == 1 and "--print-trtexec" in res.output and len(res.output.strip().splitlines()) == 1


def test_trtexec_line():
    line = trtexec_command("m.int8-gated.onnx", "m.int8.engine", "input", (112, 112), "int8", (1, 8, 37), 1024, "tc",
                           0, qdq=True)
    for part in ("--onnx=m.int8-gated.onnx", "--saveEngine=m.int8.engine", "--minShapes=input:8x3x112x112",
                 "--optShapes=input:8x3x112x112", "--maxShapes=input:8x3x112x112", "--fp16", "--int8",
                 "--memPoolSize=workspace:1024M", "--timingCacheFile=tc", "--useDLACore=0",
                 "--allowGPUFallback"):  # DLA: static shape (defect 5 of issue 11)
        assert part in line.split(), part
    assert "--calib" not in line
    with pytest.raises(EdgekdError, match="needs the Q/DQ ONNX"):
        trtexec_command("m.onnx", "m.int8.engine", "input", (112, 112), "int8")
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


def test_build_from_onnx_paths_and_fixed_batch(tmp_path, capsys, one_machine):
    from edgekd.export.run import build_from_onnx

    one_machine(trt_version="10.3.0")
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    typed = tiny_onnx(tmp_path / "m.fp16.onnx", precision="fp16")
    side = build_from_onnx(onnx_path, "fp16", typed_onnx=typed, engines_dir=tmp_path / "e", show_trtexec=True)
    assert side["onnx"] == str(typed) and (tmp_path / "e" / "m.fp16.engine").is_file()
    assert "--stronglyTyped" in capsys.readouterr().out
    m = graph.load(onnx_path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph.save(m, tmp_path / "fixed.onnx")
    with pytest.raises(EdgekdError, match="batch is fixed at 1"):
        build_from_onnx(tmp_path / "fixed.onnx", "fp16", engines_dir=tmp_path / "e")


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


def _trtexec_lines(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip().startswith("trtexec ")]


@pytest.mark.parametrize("given", ["nothing", "calib", "qdq"])
def test_issue19_item_2_int8_trtexec_lines_never_use_placeholder_scales(tmp_path, monkeypatch, given):
    """Item 2: `edgekd build --precision int8 --print-trtexec` printed `--fp16 --int8 --calib=<cache>` naming a
    cache that exists only after a Python build: trtexec then calibrates with placeholder scales (wrong embeddings,
    no warning) and ignored the Q/DQ file. Now INT8 lines take the Q/DQ graph (given, gated, or quantized from
    --calib), or are not printed, with the reason; every printed line is checked with the trtexec double."""
    import sys

    from click.testing import CliRunner

    import trtexec
    from edgekd.cli import cli
    from edgekd.export.calib import make_calib

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    onnx_path = tiny_onnx(tmp_path / "m.onnx", kind="conv3")
    args = ["build", "--onnx", str(onnx_path), "--precision", "int8", "--print-trtexec",
            "--out", str(tmp_path / "m.int8.engine")]
    if given == "calib":
        make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
        args += ["--calib", str(tmp_path / "calib")]
    if given == "qdq":
        from edgekd.export.calib import open_calib
        from edgekd.export.int8 import quantize_int8

        make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
        quantize_int8(onnx_path, tmp_path / "m.int8-gated.onnx", open_calib(tmp_path / "calib", ARCFACE))
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    lines = _trtexec_lines(res.output)
    assert "--calib=" not in res.output
    if given == "nothing":
        assert not lines and "no INT8 trtexec line" in res.output and "placeholder" in res.output
        return
    assert len(lines) == 2
    flags_line, typed_line = lines
    for line, majors in ((flags_line, (8, 10)), (typed_line, (10, 11))):
        for major in majors:
            r = trtexec.run(line, major)
            assert r["ok"] and r["int8_scales"] == "qdq", (line, major, r)
    assert ("m.int8-minmax.onnx" if given == "calib" else "m.int8-gated.onnx") in typed_line


@pytest.mark.parametrize("profile,workspace,match", [((0, 1, 2), 64, "1 <= min <= opt <= max"),
                                                     ((4, 2, 8), 64, "1 <= min <= opt <= max"),
                                                     ((1, 2, 2.5), 64, "whole numbers"),
                                                     ((1, 8, 16), 0, "workspace")])
def test_build_refuses_a_bad_profile_or_workspace_before_tensorrt(tmp_path, one_machine, profile, workspace, match):
    """The library side of --profile / --workspace (the CLI checks them too): refused before any TensorRT call."""
    state = one_machine()
    with pytest.raises(EdgekdError, match=match):
        build_engine(tiny_onnx(tmp_path / "m.onnx"), tmp_path / "m.engine", "fp32", profile, workspace)
    assert not state.builds and not (tmp_path / "m.engine").exists()
