"""`edgekd device-check` end to end: TensorRT, CUDA and NVML are the strict doubles of tests/doubles/ (control flow
only; their engine runs the ONNX with ONNX Runtime), the reference side is real ONNX Runtime on real LFW faces."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import _trt_doubles as doubles


def run_device_check_subprocess(tmp_path, pairs, folds):
    onnx_path = doubles.tiny_face_onnx(tmp_path / "m.onnx")
    qdq = doubles.tiny_face_onnx(tmp_path / "m.int8-minmax.onnx", "int8")
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None
        from edgekd.cli import cli
        cli.main(["device-check", "--onnx", {str(onnx_path)!r}, "--data", {str(pairs)!r}, "--folds", {folds!r},
                  "--qdq-onnx", {str(qdq)!r}, "--out", {str(tmp_path / "bundle")!r}, "--quiet"],
                 standalone_mode=False)
        loaded = [m for m, v in sys.modules.items() if m.split(".")[0] in ("torch", "matplotlib") and v is not None]
        assert not loaded, loaded
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                         env=doubles.subprocess_env(profile="jetson"))
    assert res.returncode == 0, res.stderr[-3000:]
    bundle = json.loads((tmp_path / "bundle" / "device_check.json").read_text())
    assert bundle["kind"] == "device-check" and bundle["passed"]
    assert bundle["environment"]["gpu_name"] == "Orin" and bundle["environment"]["tensorrt_version"] == "10.3.0"
    assert set(bundle["engines"]) == {"fp16", "int8"}
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
    from _eval_tiny import make_lfw

    bundle = run_device_check_subprocess(tmp_path, make_lfw(tmp_path / "lfw", folds=2, per=3), "2")
    assert bundle["data"]["folds"] == [2]


def test_device_check_bundle_on_real_faces(tmp_path, shared_data):
    """The bundle from FP16 + INT8 (Q/DQ path) engines on LFW fold 7 (600 real pairs), in a process where torch
    cannot be imported, under JetPack 6's NVML (memory NOT_SUPPORTED: null with its reason, "—" in markdown)."""
    bundle = run_device_check_subprocess(tmp_path, shared_data / "lfw" / "pairs.txt", "7")
    assert bundle["data"]["pairs"] == 600


def test_device_check_without_tensorrt_is_one_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from _eval_tiny import make_lfw
    from edgekd.cli import cli

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    res = CliRunner().invoke(cli, ["device-check", "--onnx", str(doubles.tiny_face_onnx(tmp_path / "m.onnx")),
                                   "--data", str(make_lfw(tmp_path / "lfw", folds=1, per=2)),
                                   "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and "edgekd[trt-cu12]" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (tmp_path / "b").exists()
