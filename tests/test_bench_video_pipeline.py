"""`edgekd bench --video --detector`: the detector pipeline's JSON (stages, per-network time inside detection), the
face count on composited LFW frames, the gallery match, the no-detector mode saying so, and bad inputs as one line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tiny_models import export_onnx, tiny_class, tiny_model
from detector_files import exported_detector
from edgekd.artifacts import detector_stem, onnx_path
from edgekd.cli import cli

ROOT = Path(__file__).resolve().parents[1]
META = {"edgekd.model": "pool", "edgekd.method": "vanilla", "edgekd.precision": "fp32",
        "edgekd.preprocess": json.dumps(tiny_class("pool").preprocess.to_dict())}
STAGES = {"decode", "detect", "align", "embed", "match", "total"}


def _edgekd(*args):
    return CliRunner().invoke(cli, list(map(str, args)))


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return export_onnx(tmp_path_factory.mktemp("emb") / "pool.onnx", model=tiny_model("pool"), size=(112, 112),
                       metadata=META)


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return exported_detector(tmp_path_factory)


@pytest.fixture(scope="module")
def video(tmp_path_factory, shared_data):
    if not (shared_data / "lfw" / "raw_150").is_dir():
        pytest.skip("shared LFW raw_150 absent")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import make_test_video

    out = tmp_path_factory.mktemp("video")
    truth = make_test_video.make(out, frames=2, n_ids=3, root=shared_data / "lfw" / "raw_150")
    return out, truth


def test_detector_pipeline_json_and_faces(video, detector, embedder, tmp_path):
    folder, truth = video
    out = tmp_path / "v.json"
    r = _edgekd("bench", "--video", folder / "frames_640x480", "--detector", detector, "--onnx", embedder,
                "--gallery", folder / "gallery", "--threads", 1, "--frames", 2, "-o", out)
    assert r.exit_code == 0, r.output
    j = json.loads(out.read_text())
    assert j["mode"] == "detector" and set(j["stages_ms"]) == STAGES
    assert set(j["detector_networks_ms"]) == {"pnet", "rnet", "onet"}
    for s in j["stages_ms"].values():
        assert {"mean", "std", "p50", "p90", "p99"} <= set(s)
    assert j["frames"] == 1 and j["warmup_frames"] == 1  # 2 frames, the first untimed
    assert j["faces_per_frame"] == 3.0  # three LFW photos composited per frame
    assert j["frames_per_s"] > 0 and j["faces_per_s"] == pytest.approx(3 * j["frames_per_s"])
    assert j["gallery"]["identities"] == 3
    assert j["threshold_source"].startswith("none stored")  # this embedder ships no thresholds
    assert len(j["per_frame"][0]["matches"]) == 3
    assert "detect" in r.output and "pnet (in detect)" in r.output


def test_report_puts_the_frame_figure_beside_the_embedder(video, detector, embedder, tmp_path):
    """Table 2: the per-frame end-to-end time of a video_pipeline result sits in the row of the same embedder's
    bench result (same model, precision, runtime, device), both files named as its source."""
    import csv

    folder, _ = video
    results = tmp_path / "results"
    results.mkdir()
    r = _edgekd("bench", "--video", folder / "frames_640x480", "--detector", detector, "--onnx", embedder,
                "--threads", 1, "--frames", 2, "-o", results / "video.json")
    assert r.exit_code == 0, r.output
    r = _edgekd("bench", "--onnx", embedder, "-b", "1,4", "-n", "1", "--warmup", "0", "--min-time", "0", "-q",
                "-o", results / "bench.json")
    assert r.exit_code == 0, r.output
    video_ms = json.loads((results / "video.json").read_text())["stages_ms"]["total"]["mean"]
    r = _edgekd("report", results, "--out", tmp_path / "report")
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader((tmp_path / "report" / "table2_latency.csv").open()))
    assert [row["batch"] for row in rows] == ["1", "4"]
    for row in rows:
        assert row["frame e2e ms (mean ± std)"].startswith(f"{video_ms:.2f} ± ")
        assert row["faces/frame"] == "3.00" and row["source"] == "bench.json + video.json"
    (results / "bench.json").unlink()  # a video result alone still shows, in a row of its own
    r = _edgekd("report", results, "--out", tmp_path / "report2")
    assert r.exit_code == 0, r.output
    (row,) = csv.DictReader((tmp_path / "report2" / "table2_latency.csv").open())
    assert row["batch"] == "frame" and row["latency ms (mean ± std)"] == "—" and row["source"] == "video.json"
    assert row["frame e2e ms (mean ± std)"].startswith(f"{video_ms:.2f} ± ")


def test_no_detector_mode_says_so(embedder, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for k in range(2):
        Image.fromarray(np.full((120, 160, 3), 40 * k, np.uint8)).save(frames / f"{k}.png")
    out = tmp_path / "b.json"
    r = _edgekd("bench", "--onnx", embedder, "--video", frames, "-b", "1", "-n", "1", "--warmup", "0",
                "--min-time", "0", "-q", "-o", out)
    assert r.exit_code == 0, r.output
    assert "no face detection ran" in r.output
    assert "no face detection ran" in json.loads(out.read_text())["video"]["detection"]


@pytest.mark.parametrize("case", ["empty_frames", "not_a_detector", "damaged_detector"])
def test_bad_inputs_one_line(case, embedder, tmp_path):
    frames, det = tmp_path / "frames", tmp_path / "det"
    frames.mkdir()
    det.mkdir()
    if case != "empty_frames":
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(frames / "0.png")
    if case == "not_a_detector":
        (det / "notes.txt").write_text("not a network")
    else:
        for n in ("pnet", "rnet", "onet"):
            onnx_path(det / detector_stem("mtcnn", n)).write_bytes(b"x")
    r = _edgekd("bench", "--video", frames, "--detector", det, "--onnx", embedder)
    assert r.exit_code == 1
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.output
    assert str(frames if case == "empty_frames" else det) in lines[0]
