"""`edgekd device-check --detector D`: the detector section of the evidence bundle (MTCNN FP16 engines built from the
exported folder, or given engines; per-network and detection-level parity with ONNX Runtime on real LFW photos;
per-frame latency on composited frames; the detect -> align -> embed -> match pipeline on the face engine), on the
strict TensorRT doubles of every generation. The doubles run the engines' ONNX graphs with ONNX Runtime, so the
figures check control flow only; the bundle names the TensorRT module that ran."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

import _trt_doubles as doubles
from detector_files import exported_detector
from edgekd.artifacts import detector_stem, engine_path, onnx_path, sidecar_path
from tiny_models import make_lfw, tiny_onnx

NETWORKS = ("pnet", "rnet", "onet")
PHOTOS = ("Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
          "Serena_Williams/Serena_Williams_0001.jpg")
STATS = {"mean", "std", "p50", "p90", "p99"}


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return exported_detector(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(tmp_path_factory, shared_data):
    """Three real LFW photos with one face each."""
    root = shared_data / "lfw" / "raw_150"
    if not root.is_dir():
        pytest.skip("shared LFW raw photos absent")
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(root / name, folder / name.split("/")[1])
    return folder


def _device_check(tmp_path, detector, photos, trt_version, *extra):
    """The command in a process where torch cannot be imported; returns (bundle, markdown, stdout)."""
    onnx = tiny_onnx(tmp_path / "m.onnx")
    lfw = make_lfw(tmp_path / "lfw", folds=1, per=2)
    args = ["device-check", "--onnx", str(onnx), "--data", str(lfw), "--detector", str(detector),
            "--detector-photos", str(photos), "--detector-frames", "2", "--out", str(tmp_path / "bundle"), "--quiet",
            *extra]
    res = doubles.run_without_torch(args, profile="jetson", trt_version=trt_version)
    bundle = json.loads((tmp_path / "bundle" / "device_check.json").read_text())
    return bundle, (tmp_path / "bundle" / "device_check.md").read_text(), res.stdout


@pytest.mark.parametrize("trt_version", doubles.GENERATIONS)
def test_detector_section_on_every_generation(det, photos, tmp_path, trt_version):
    bundle, md, out = _device_check(tmp_path, det, photos, trt_version)
    assert bundle["passed"] and bundle["environment"]["tensorrt_version"] == trt_version
    assert bundle["environment"]["tensorrt_module"].endswith("tests/doubles/tensorrt/__init__.py")  # what ran
    d = bundle["detector"]
    assert (d["detector"], d["precision"], d["engines_from"]) == ("mtcnn", "fp16", "built here")
    assert d["runtime"]["runtime"] == "tensorrt" and d["reference"]["runtime"] == "onnxruntime"
    folder = tmp_path / "bundle" / "engines" / "mtcnn"
    for n in NETWORKS:
        engine = engine_path(folder / detector_stem("mtcnn", n), "fp16")
        assert d["engines"][n]["engine"] == str(engine) and d["runtime"]["files"][n] == str(engine)
        side = json.loads(sidecar_path(engine).read_text())
        assert side["detector"] == {**side["detector"], "name": "mtcnn", "network": n}
        assert side["tensorrt_version"] == trt_version
        # strongly typed generations build the FP16 graph, TensorRT 8.6 the FP32 one with the FP16 flag
        assert side["onnx"].endswith(".fp16.onnx") == (trt_version != "8.6.1")
        assert d["reference"]["files"][n] == str(onnx_path(det / detector_stem("mtcnn", n)))
    assert d["engines"]["pnet"]["profile"]["input"]["max"] == [1, 3, 385, 385]  # the 640x480 pyramid
    assert d["engines"]["onet"]["profile"]["input"]["max"] == [256, 3, 48, 48]
    p = d["parity"]
    assert p["photos"] == 3 and p["faces_onnxruntime"] == p["faces_engine"] >= 3 and p["count_mismatches"] == 0
    assert 0 <= p["max_px"] <= p["max_px_allowed"] and p["ok"]
    assert set(p["network_max_abs"]) == set(NETWORKS) and all(v < 0.05 for v in p["network_max_abs"].values())
    # the real inputs: one P-Net call per pyramid level of each photo, R-/O-Net crops of the proposals
    assert p["network_inputs"]["pnet"]["calls"] > 3 and p["network_inputs"]["onet"]["inputs"] >= 3
    if trt_version == "8.6.1":  # the double runs the FP32 graph it was built from: same numbers as ONNX Runtime
        assert max(p["network_max_abs"].values()) < 1e-5 and p["max_px"] < 1e-3
    else:  # the FP16 graph ran on the engine side, not the reference a second time
        assert min(p["network_max_abs"].values()) > 0
    lat = d["latency"]
    assert lat["frames"] == 2 and lat["frame_size"] == [640, 480] and lat["faces_composited"] == 3
    assert lat["faces_per_frame"] == 3.0 and STATS <= set(lat["per_frame_ms"]) and lat["frames_per_s"] > 0
    assert set(lat["networks_ms"]) == set(NETWORKS) and "composite_frame" in lat["frames_from"]
    pipe = d["pipeline"]
    assert pipe["face_engine"] == bundle["engines"]["fp16"]["engine"] and pipe["frames"] == 2
    assert set(pipe["stages_ms"]) == {"decode", "detect", "align", "embed", "match", "total"}
    assert pipe["faces_per_frame"] == 3.0 and pipe["gallery"]["identities"] == 3
    assert "## Detector: mtcnn fp16 engines (built here" in md and "| detect (detector alone) |" in md
    assert "| pipeline total |" in md and "tests/doubles/tensorrt" in md
    assert "detector: engines vs ONNX Runtime on 3 photos" in out


def test_given_engines_are_used_as_they_are(det, photos, tmp_path, one_machine):
    """A member engine as --detector: those engines run (nothing is built), against the FP32 ONNX files beside
    them; a detector failure (here frames larger than P-Net's engine profile) is recorded as one
    line and fails the bundle while the face engine's figures stay."""
    from edgekd.device_check import run_device_check
    from edgekd.export.detector import build_detector_engines

    state = one_machine(profile="jetson", trt_version="11.4.0")
    folder = tmp_path / "det"
    shutil.copytree(det, folder)
    build_detector_engines(folder, "fp16", frame_size=(480, 640), batch_profile=(1, 4, 8))
    builds = len(state.builds)
    member = engine_path(folder / detector_stem("mtcnn", "onet"), "fp16")
    onnx = tiny_onnx(tmp_path / "m.onnx")
    lfw = make_lfw(tmp_path / "lfw", folds=1, per=2)
    kw = dict(detector=member, detector_photos=photos, detector_frames=1, iterations=2, batch_sizes=(1,),
              progress=False, log=lambda *a: None)
    bundle = run_device_check(onnx, lfw, tmp_path / "b", **kw)
    assert len(state.builds) == builds + 1  # the face model's FP16 engine only
    d = bundle["detector"]
    assert bundle["passed"] and d["engines_from"] == "given" and d["precision"] == "fp16"
    assert d["engines"]["pnet"]["engine"] == str(engine_path(folder / detector_stem("mtcnn", "pnet"), "fp16"))
    assert d["runtime"]["settings"]["max_batch"] == 8 and d["parity"]["ok"] and d["latency"]["faces_per_frame"] == 3
    big = run_device_check(onnx, lfw, tmp_path / "b2", frame_size=(1280, 720), **kw)
    assert not big["passed"] and "\n" not in big["detector"]["error"]
    assert "does not cover the P-Net pyramid of 1280x720 frames (needs 769x769)" in big["detector"]["error"]
    assert big["engines"]["fp16"]["embeddings_vs_onnxruntime"]["ok"]
    md = (tmp_path / "b2" / "device_check.md").read_text()
    assert "## Detector: FAILED" in md and "| fp16 |" in md


def test_not_a_detector_is_one_error_line(det, tmp_path):
    """Checked before any work (TensorRT not even imported): nothing is written."""
    from edgekd.cli import cli

    face = tiny_onnx(tmp_path / "face.onnx")
    swapped = tmp_path / "swapped"
    swapped.mkdir()
    for n in NETWORKS:
        shutil.copy(face if n == "pnet" else onnx_path(det / detector_stem("mtcnn", n)),
                    onnx_path(swapped / detector_stem("mtcnn", n)))
    empty = tmp_path / "empty"
    empty.mkdir()
    lfw = make_lfw(tmp_path / "lfw", folds=1, per=2)
    cases = {swapped: "not an MTCNN detector network", empty: "not a complete MTCNN detector",
             face: "not an MTCNN detector file"}
    for path, message in cases.items():
        res = CliRunner().invoke(cli, ["device-check", "--onnx", str(face), "--data", str(lfw),
                                       "--detector", str(path), "--out", str(tmp_path / "b")])
        assert res.exit_code == 1 and res.output.startswith("Error: "), res.output
        assert message in res.output and len(res.output.strip().splitlines()) == 1
        assert not (tmp_path / "b").exists()
    res = CliRunner().invoke(cli, ["device-check", "--onnx", str(face), "--data", str(lfw),
                                   "--detector-photos", str(tmp_path), "--out", str(tmp_path / "b")])
    assert res.exit_code == 1 and "--detector-photos needs --detector" in res.output
