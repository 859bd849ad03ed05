"""`edgekd export --detector mtcnn` and `edgekd.detect.open.open_detector`: the exported files (dynamic axes, PReLU
slopes at their input's rank, metadata), FP32 parity with PyTorch on real photos, opening a folder or a member file,
refusing files that are not that detector network, and the TensorRT engines through the strict doubles of every
TensorRT generation (their profiles, sidecars, and detections equal to ONNX Runtime's)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from detector_files import exported_detector
from tiny_models import tiny_onnx
from edgekd.artifacts import detector_stem, engine_path, onnx_path, sidecar_path
from edgekd.cli import cli
from edgekd.errors import EdgekdError

NETWORKS = ("pnet", "rnet", "onet")


@pytest.fixture(scope="module")
def det(tmp_path_factory):
    return exported_detector(tmp_path_factory)


@pytest.fixture(scope="module")
def photos(shared_data):
    root = shared_data / "lfw" / "raw_150"
    if not root.is_dir():
        pytest.skip("shared LFW raw photos absent")
    from edgekd.data.image import decode_image

    names = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "George_W_Bush/George_W_Bush_0001.jpg",
             "Serena_Williams/Serena_Williams_0001.jpg"]
    return [decode_image(root / n) for n in names]


def _copy(det, dst, **swap):
    """The detector folder with some networks' files replaced by other files."""
    dst.mkdir()
    for n in NETWORKS:
        shutil.copy(swap.get(n, onnx_path(det / detector_stem("mtcnn", n))), onnx_path(dst / detector_stem("mtcnn", n)))
    return dst


def test_exported_files_axes_slopes_metadata_and_parity(det):
    report = json.loads((det / "mtcnn.export_report.json").read_text())
    assert report["opset"] >= 13
    p = report["parity"]["fp32"]
    assert p["photos"] > 0 and p["faces_reference"] > 0 and p["count_mismatches"] == 0 and p["max_px"] <= 0.5
    assert max(p["network_max_abs"].values()) <= 1e-3
    for n in NETWORKS:
        for variant in ("fp32", "fp16"):
            m = onnx.load(onnx_path(det / detector_stem("mtcnn", n), variant))
            meta = {x.key: x.value for x in m.metadata_props}
            assert (meta["edgekd.kind"], meta["edgekd.network"], meta["edgekd.precision"]) == ("detector", n, variant)
            assert meta["edgekd.outputs"].split(",") == [o.name for o in m.graph.output]
            dims = [d.dim_param or d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim]
            dynamic = [isinstance(d, str) for d in dims]
            assert dynamic == ([True, False, True, True] if n == "pnet" else [True, False, False, False])
        inferred = onnx.shape_inference.infer_shapes(onnx.load(onnx_path(det / detector_stem("mtcnn", n))))
        ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in inferred.graph.value_info}
        inits = {i.name: len(i.dims) for i in inferred.graph.initializer}
        prelus = [node for node in inferred.graph.node if node.op_type == "PRelu"]
        assert prelus and all(inits[p.input[1]] == ranks[p.input[0]] for p in prelus)


def test_open_folder_and_fp16_member_detect_real_faces(det, photos):
    from edgekd.detect.open import open_detector

    with open_detector(det) as d:
        assert d.describe()["runtime"] == "onnxruntime"
        assert all(".fp16." not in str(f) for f in d.files.values())
        found = [d(p) for p in photos]
    assert all(len(f) >= 1 for f in found)
    face = max(found[0], key=lambda f: f.area)
    x0, y0, x1, y1 = face.box
    assert 20 < x1 - x0 < 150 and face.landmarks.shape == (5, 2)
    with open_detector(onnx_path(det / detector_stem("mtcnn", "onet"), "fp16")) as d16:
        assert all(str(f).endswith(".fp16.onnx") for f in d16.files.values())
        half = d16(photos[0])
    assert len(half) == len(found[0])
    assert np.abs(np.array([f.box for f in half]) - np.array([f.box for f in found[0]])).max() < 8


def test_files_that_are_not_this_detector_are_refused(det, tmp_path):
    from edgekd.detect.open import open_detector

    face = tiny_onnx(tmp_path / "face.onnx", size=112)
    cases = {
        "face_model": (_copy(det, tmp_path / "a", pnet=face), "not an MTCNN detector network"),
        "wrong_network": (_copy(det, tmp_path / "b", pnet=onnx_path(det / detector_stem("mtcnn", "rnet"))),
                          "is the rnet network, expected pnet"),
        "face_file": (face, "not an MTCNN detector file"),
        "nothing": (tmp_path / "none", "no such detector folder"),
    }
    missing = _copy(det, tmp_path / "c")
    onnx_path(missing / detector_stem("mtcnn", "onet")).unlink()
    cases["missing"] = (missing, "missing mtcnn-onet.onnx")
    for name, (path, message) in cases.items():
        with pytest.raises(EdgekdError, match=message):
            open_detector(path)


def test_export_command(tmp_path, shared_data):
    """The CLI prints the files and both parity lines; options of a face-model export are refused, not ignored."""
    raw = shared_data / "lfw" / "raw_150"
    if not raw.is_dir():
        pytest.skip("shared LFW raw photos absent")
    photos = tmp_path / "photos"
    shutil.copytree(raw / "Aaron_Eckhart", photos)
    out = tmp_path / "det"
    r = CliRunner().invoke(cli, ["export", "--detector", "mtcnn", "--out", str(out), "--parity-images", str(photos)])
    assert r.exit_code == 0, r.output
    assert "parity fp32 vs PyTorch" in r.output and "parity fp16 vs PyTorch" in r.output
    assert all(onnx_path(out / detector_stem("mtcnn", n), v).is_file() for n in NETWORKS for v in ("fp32", "fp16"))
    refused = CliRunner().invoke(cli, ["export", "--detector", "mtcnn", "--out", str(out), "--calib", "x"])
    assert refused.exit_code == 2 and "--calib does not apply to --detector" in refused.output
    (tmp_path / "f").write_text("")
    to_file = CliRunner().invoke(cli, ["export", "--detector", "mtcnn", "--out", str(tmp_path / "f")])
    assert to_file.exit_code == 1 and to_file.output.strip().splitlines()[-1].startswith(f"Error: {tmp_path / 'f'}")


def test_engines_build_open_and_match_onnxruntime(det, photos, tmp_path, machine):
    """Per generation: FP32 and FP16 engines with P-Net's pyramid profile and R/O-Net batch profiles; the sidecar
    names the network; strongly typed builds read the FP16 graph; detections equal ONNX Runtime's, with R-/O-Net
    batches split at the profile maximum."""
    from edgekd.detect.mtcnn import MtcnnSettings, level_size, pyramid
    from edgekd.detect.open import open_detector
    from edgekd.export.detector import build_detector_engines

    state = machine()
    folder = _copy(det, tmp_path / "det")
    for n in NETWORKS:
        shutil.copy(onnx_path(det / detector_stem("mtcnn", n), "fp16"), onnx_path(folder / detector_stem("mtcnn", n), "fp16"))
    with pytest.raises(EdgekdError, match="fp32 or fp16"):
        build_detector_engines(folder, "int8")
    for precision in ("fp32", "fp16"):
        built = build_detector_engines(folder, precision, frame_size=(480, 640), batch_profile=(1, 4, 8))
        for n in NETWORKS:
            side = json.loads(sidecar_path(engine_path(folder / detector_stem("mtcnn", n), precision)).read_text())
            assert side["detector"]["network"] == n and side["detector"]["name"] == "mtcnn"
            typed = side["api_path"] == "strongly-typed"
            assert side["onnx"].endswith(".fp16.onnx") == (typed and precision == "fp16")
        first = level_size(480, 640, pyramid(480, 640, MtcnnSettings().min_face, MtcnnSettings().factor)[0])
        assert built["pnet"]["profile"]["input"] == {"min": [1, 3, 12, 12], "opt": [1, 3, *first],
                                                      "max": [1, 3, max(first), max(first)]}
        assert built["onet"]["profile"]["input"]["max"] == [8, 3, 48, 48]
    with open_detector(folder) as ref:
        want = [ref(p) for p in photos]
    del state.executions[:]
    with open_detector(engine_path(folder / detector_stem("mtcnn", "pnet"), "fp32")) as d:
        assert d.kind == "engine" and d.settings.max_batch == 8
        got = [d(p) for p in photos]
    assert max(s[0] for s in state.executions) <= 8
    for a, b in zip(want, got):
        assert len(a) == len(b)
        np.testing.assert_allclose([f.box for f in a], [f.box for f in b], atol=1e-3)
    assert not state.memory


def test_detector_settings_from_the_command_line(det, shared_data, tmp_path):
    """--detector-set overrides one MTCNN setting at a time (the JSON names what ran); bad keys or values are a
    malformed command line."""
    raw = shared_data / "lfw" / "raw_150"
    if not raw.is_dir():
        pytest.skip("shared LFW raw photos absent")
    a, b = raw / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg", raw / "George_W_Bush" / "George_W_Bush_0001.jpg"
    emb = tiny_onnx(tmp_path / "face.onnx", size=112)
    run = ["verify", str(a), str(b), "--onnx", str(emb), "--detector", str(det), "--threshold", "0.3", "--json"]
    r = CliRunner().invoke(cli, run + ["--detector-set", "min_face=40", "--detector-set", "thresholds=0.6,0.7,0.9"])
    assert r.exit_code == 0, r.output
    settings = json.loads(r.output)["detector"]["settings"]
    assert settings["min_face"] == 40 and settings["thresholds"] == [0.6, 0.7, 0.9] and settings["factor"] == 0.709
    for bad, message in (("min_face=5", "at least 12 px"), ("bogus=1", "unknown MTCNN setting 'bogus'"),
                         ("min_face", "expected KEY=NUMBER")):
        r = CliRunner().invoke(cli, run + ["--detector-set", bad])
        assert r.exit_code == 2 and message in r.output, r.output


def test_pyramid_levels_in_parallel_find_the_same_faces(det, photos):
    """On the CPU the levels run on two threads (PYRAMID_WORKERS) that share the threads asked for; the same
    networks with the levels run one after another give the very same faces."""
    from edgekd.bench.video import composite_frame
    from edgekd.detect.mtcnn import Mtcnn
    from edgekd.detect.open import PYRAMID_WORKERS, open_detector

    frame, _ = composite_frame(photos, 0, (640, 480), per_frame=3)
    with open_detector(det, threads=2) as d:
        assert d.level_workers == PYRAMID_WORKERS == d.describe()["pyramid_workers"]
        in_order = Mtcnn(d.networks, d.settings)
        for image in [frame, *photos]:
            want, got = in_order(image), d(image)
            assert len(got) == len(want) >= 1
            for a, b in zip(got, want):
                assert a.box == b.box and a.score == b.score and np.array_equal(a.landmarks, b.landmarks)
    assert d._levels is None  # close() stopped the threads
    with open_detector(det, threads=1) as one:
        assert one.level_workers == 1
