"""`edgekd device-check` end to end: TensorRT, CUDA and NVML are the strict doubles of tests/doubles/ (control flow
only; their engine runs the ONNX with ONNX Runtime), the reference side is real ONNX Runtime on real LFW faces."""

from __future__ import annotations

import json
import sys

import pytest

import _trt_doubles as doubles
from tiny_models import make_lfw, tiny_onnx


def run_device_check_subprocess(tmp_path, pairs, folds, int8=("--qdq-onnx", None), trt_version="10.3.0",
                                passed=True):
    """device-check in a process where torch cannot be imported; `int8`: ("--qdq-onnx", None) for a Q/DQ file
    written here, or (option, path), e.g. ("--calib", calib/NAME)."""
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    option, value = int8
    if value is None:
        value = tiny_onnx(tmp_path / "m.int8-minmax.onnx", precision="int8")
    doubles.run_without_torch(["device-check", "--onnx", onnx_path, "--data", pairs, "--folds", folds, option, value,
                               "--out", tmp_path / "bundle", "--quiet"], profile="jetson", trt_version=trt_version)
    bundle = json.loads((tmp_path / "bundle" / "device_check.json").read_text())
    assert bundle["kind"] == "device-check" and bundle["passed"] == passed
    env = bundle["environment"]
    assert env["gpu_name"] == "Orin" and env["tensorrt_version"] == trt_version
    assert env["cuda_runtime_version"] == "12.6" and env["cuda_driver_version"] == "12.6" and env["cuda_family"] == "cu12"
    assert set(bundle["engines"]) == {"fp16", "int8"}
    if not passed:
        return bundle
    for e in bundle["engines"].values():
        assert e["embeddings_vs_onnxruntime"]["cosine_min"] > 0.9999  # the double runs the same graph
        assert 0 <= e["verification"]["accuracy_mean"] <= 1
        assert e["memory"]["gpu_bytes"] is None and "not supported" in e["memory"]["gpu_bytes_reason"].lower()
        assert [r["batch"] for r in e["latency"]] == [1, 8, 32]
    md = (tmp_path / "bundle" / "device_check.md").read_text()
    assert "PASSED" in md and "| fp16 |" in md and "| int8 |" in md and "—" in md
    return bundle


def test_device_check_control_flow(tmp_path):
    """The whole command on a small LFW-format set: FP16 + INT8 (Q/DQ) engines, bundle JSON + markdown, no torch."""

    bundle = run_device_check_subprocess(tmp_path, make_lfw(tmp_path / "lfw", folds=2, per=3), "2")
    assert bundle["data"]["folds"] == [2]


def test_device_check_bundle_on_real_faces(tmp_path, shared_data):
    """The bundle from FP16 + INT8 (Q/DQ path) engines on LFW fold 7 (600 real pairs), in a process where torch
    cannot be imported, under JetPack 6's NVML (memory NOT_SUPPORTED: null with its reason, "—" in markdown)."""
    bundle = run_device_check_subprocess(tmp_path, shared_data / "lfw" / "pairs.txt", "7")
    assert bundle["data"]["pairs"] == 600


@pytest.mark.parametrize("trt_version", ["8.6.1", "10.3.0", "11.4.0"])
def test_issue19_item_1_calib_makes_the_qdq_file_on_every_generation(tmp_path, trt_version):
    """Item 1: `device-check --calib C` without --qdq-onnx built INT8 from the FP32 graph, which a strongly typed
    build (TensorRT >= 10.1) refuses; the exception also lost the finished FP16 measurements. Now the exporter's
    quantizer writes the Q/DQ file from C, and INT8 runs on 8.6, 10.x and 11.x alike."""
    from edgekd.export.calib import make_calib

    make_calib("synthetic:4x2", tmp_path / "calib", n=8, progress=False)
    bundle = run_device_check_subprocess(tmp_path, make_lfw(tmp_path / "lfw", folds=1, per=2), "1",
                                         int8=("--calib", tmp_path / "calib"), trt_version=trt_version)
    qdq = bundle["engines"]["int8"]["sidecar"]["onnx"]
    assert qdq.endswith("m.int8-minmax.onnx") and bundle["engines"]["int8"]["qdq_onnx"]["made_from"] == "calib"


def test_issue19_item_1_int8_failure_keeps_fp16_and_records_the_error(tmp_path):
    """Item 1: a failure of one precision is recorded in the bundle; the other engines are still written."""
    from onnx import helper

    from edgekd.export import graph

    bad = tiny_onnx(tmp_path / "bad.int8-minmax.onnx", precision="int8")
    m = graph.load(bad)
    m.graph.node.append(helper.make_node("Col2Im", ["embedding"], ["unused"], name="unsupported"))
    graph.save(m, bad)
    bundle = run_device_check_subprocess(tmp_path, make_lfw(tmp_path / "lfw", folds=1, per=2), "1",
                                         int8=("--qdq-onnx", bad), passed=False)
    assert bundle["engines"]["fp16"]["embeddings_vs_onnxruntime"]["ok"]
    assert "Col2Im" in bundle["engines"]["int8"]["error"] and "\n" not in bundle["engines"]["int8"]["error"]
    md = (tmp_path / "bundle" / "device_check.md").read_text()
    assert "| fp16 |" in md and "Col2Im" in md


def test_device_check_without_tensorrt_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgekd.cli import cli

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    res = CliRunner().invoke(cli, ["device-check", "--onnx", str(tiny_onnx(tmp_path / "m.onnx")),
                                   "--data", str(make_lfw(tmp_path / "lfw", folds=1, per=2)),
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "edgekd[trt-cu12]" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "b").exists()


def test_issue19_item_3_device_check_on_a_too_old_driver_is_one_line(tmp_path, one_machine):
    """Item 3: CUDA 13 packages (cuda-python 13) on a CUDA 12 driver: device-check stops with one line naming the
    versions and the CUDA 12 extra, before any engine is built."""
    from click.testing import CliRunner

    from edgekd.cli import cli

    one_machine(hide=("pycuda",), cuda_runtime=13000, cuda_driver=12040)
    res = CliRunner().invoke(cli, ["device-check", "--onnx", str(tiny_onnx(tmp_path / "m.onnx")),
                                   "--data", str(make_lfw(tmp_path / "lfw", folds=1, per=2)),
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and len(res.output.strip().splitlines()) == 1
    assert "CUDA 13.0 runtime" in res.output and "CUDA 12.4" in res.output and "edgekd[trt-cu12]" in res.output
    assert not (tmp_path / "b").exists()


def test_issue19_device_check_gate_data_makes_the_gated_qdq_file(tmp_path, one_machine, shared_data):
    """`--calib C --gate-data D`: the INT8 engine is built from the accuracy-gated Q/DQ file quantized here (the
    gate of `edgekd export`, on LFW fold 1 identities), on TensorRT 11.x (no calibrator at all)."""
    from edgekd.device_check import run_device_check
    from edgekd.export.calib import make_calib

    make_calib("synthetic:16x4", tmp_path / "calib", n=64, progress=False)
    one_machine(profile="jetson", trt_version="11.4.0")
    pairs = shared_data / "lfw" / "pairs.txt"
    bundle = run_device_check(tiny_onnx(tmp_path / "m.onnx", kind="conv3"), pairs, tmp_path / "b", folds=[7],
                              calib=tmp_path / "calib", gate_data=pairs, gate_folds=[1], iterations=2,
                              batch_sizes=(1,), progress=False, log=lambda *a: None)
    int8 = bundle["engines"]["int8"]
    assert "error" not in int8 and int8["qdq_onnx"]["made_from"] == "calib+gate"
    assert int8["qdq_onnx"]["gate"]["spec"] == "tar@0.0001=0.3" and int8["sidecar"]["onnx"].endswith("m.int8-gated.onnx")
