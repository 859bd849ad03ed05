"""Bench JSON schema on a tiny ONNX model and a torch model; GFLOPs from the ONNX graph; frames input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from edgekd.errors import EdgekdError
from tiny_models import tiny_macs, tiny_model, tiny_onnx

FAST = dict(batch_sizes=(1, 4), warmup=1, iterations=3, min_time_s=0.0, progress=False)


def check_schema(r: dict, batches) -> None:
    assert r["kind"] == "bench"
    assert set(r["label"]) == {"model", "method", "precision", "artifact"}
    assert [x["batch"] for x in r["results"]] == list(batches)
    for x in r["results"]:
        L = x["latency_ms"]
        assert x["iterations"] >= 3
        assert 0 < L["min"] <= L["p50"] <= L["p90"] <= L["p99"]
        assert L["std"] >= 0 and L["mean"] > 0
        assert x["throughput_img_s"] == pytest.approx(x["batch"] * 1e3 / L["mean"])
        assert "device_ms" in x
    m = r["memory"]
    assert set(m) >= {"gpu_bytes", "torch_peak_bytes", "rss_peak_bytes", "unified_bytes"}
    assert m["rss_peak_bytes"] > 10 * 2**20
    env = r["env"]
    assert env["cpu_count"] >= 1 and env["packages"]["numpy"] == np.__version__
    json.dumps(r)  # serialisable as is


def test_onnx_bench_schema_and_graph_gflops(tmp_path):
    from edgekd.bench import run_bench

    path = tiny_onnx(tmp_path / "tiny.onnx", kind="conv")
    r = run_bench(onnx=path, **FAST)
    check_schema(r, (1, 4))
    assert r["label"] == {"model": "tiny", "method": "vanilla", "precision": "fp32", "artifact": str(path)}
    assert r["runtime"] == "onnxruntime" and r["input_size"] == [16, 16]
    assert r["artifact_bytes"] == path.stat().st_size
    assert r["params"] == 4 * 27 + 8 * 4
    assert r["gflops"] == pytest.approx(tiny_macs() * 1e-9)
    assert r["complexity_source"] == "onnx-graph"
    assert r["results"][0]["device_ms"] is None  # CPU: no device timer
    assert r["memory"]["gpu_bytes"] is None  # no NVML on this host


def test_onnx_metadata_gflops_wins(tmp_path):
    from edgekd.bench.complexity import onnx_complexity

    path = tiny_onnx(tmp_path / "m.onnx", kind="conv", metadata={"gflops": "1.5", "params": "1000"})
    assert onnx_complexity(path) == {"params": 1000, "gflops": 1.5, "macs": 1_500_000_000, "source": "onnx-metadata"}


def test_torch_bench_schema():
    from edgekd.bench import run_bench
    from edgekd.models import complexity

    tiny = tiny_model("bench")  # registry-shaped (preprocess, embedding_size), the torch twin of tiny_onnx("conv")
    r = run_bench(model="tiny", runtime_kw={"module": tiny}, **FAST)
    check_schema(r, (1, 4))
    assert r["runtime"] == "torch" and r["artifact_bytes"] is None and r["label"]["model"] == "tiny"
    assert r["complexity_source"] == "edgekd.models.complexity"
    assert r["gflops"] == pytest.approx(complexity(tiny)["gflops"]) == pytest.approx(tiny_macs() * 1e-9)
    assert r["params"] == 4 * 27 + 8 * 4
    assert "torch_threads" in r["env"]


def test_frames_folder(tmp_path):
    from edgekd.bench import run_bench

    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):  # two already at the input size (aligned faces), two larger (resize + centre crop)
        s = 16 if i < 2 else 40
        Image.fromarray(rng.integers(0, 255, (s, s + 6 * (i >= 2), 3), dtype=np.uint8)).save(frames / f"{i:03d}.png")
    (frames / "notes.txt").write_text("not a frame")
    r = run_bench(onnx=tiny_onnx(tmp_path / "t.onnx", kind="conv"), video=frames, batch_sizes=(1,), warmup=1,
                  iterations=3, min_time_s=0.0, progress=False)
    v = r["video"]
    assert v["frames"] == 4 and v["frames_resized"] == 2
    assert v["per_frame_ms_with_preprocessing"]["mean"] > v["per_frame_ms_inference_only"]["mean"] > 0


def test_fit_frame_centre_crop():
    from edgekd.bench.video import fit_frame

    frame = np.zeros((100, 200, 3), np.uint8)
    frame[:, 50:150] = 255  # centre square white
    out = fit_frame(frame, (50, 50))
    assert out.shape == (50, 50, 3) and out[:, 1:-1].min() == 255  # the black sides were cropped away


def test_video_file_without_opencv(tmp_path):
    from edgekd.bench.video import iter_frames

    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    code = ("import sys; sys.modules['cv2'] = None\n"
            "from edgekd.bench.video import iter_frames\n"
            "from edgekd.errors import EdgekdError\n"
            f"try:\n    next(iter_frames({str(video)!r}))\nexcept EdgekdError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "needs OpenCV" in out.stdout and "folder of frames" in out.stdout, out.stderr
    with pytest.raises(EdgekdError, match="no such"):
        next(iter_frames(tmp_path / "missing"))


def test_corrupt_frame_names_file(tmp_path):
    from edgekd.bench.video import iter_frames

    (tmp_path / "000.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(EdgekdError, match="000.jpg"):
        list(iter_frames(tmp_path))


def test_bench_isolated_process(tmp_path):
    from edgekd.bench import run_bench_isolated

    path = tiny_onnx(tmp_path / "tiny.onnx", kind="conv")
    r = run_bench_isolated({"onnx": str(path), "batch_sizes": [2], "warmup": 1, "iterations": 3, "min_time_s": 0.0,
                            "progress": False})
    check_schema(r, (2,))
    assert r["label"]["model"] == "tiny"
    # the child's own peak, not this (bigger) process's: Linux carries ru_maxrss over fork+exec
    ballast = b"\x01" * (400 * 2**20)  # noqa: F841 - written pages: raises this process's peak above a bare bench
    r = run_bench_isolated({"onnx": str(path), "batch_sizes": [1], "warmup": 1, "iterations": 3, "min_time_s": 0.0,
                            "progress": False})
    assert r["memory"]["rss_peak_bytes"] < 400 * 2**20
    with pytest.raises(EdgekdError, match="missing.onnx"):
        run_bench_isolated({"onnx": str(tmp_path / "missing.onnx"), "progress": False})


def test_jetson_parsers(tmp_path):
    from edgekd.bench.environment import jetson_release
    from edgekd.bench.memory import meminfo_used_bytes, parse_tegrastats_ram

    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R35 (release), REVISION: 3.1, GCID: 32827747, BOARD: t186ref, EABI: aarch64\n")
    assert jetson_release(rel)["l4t"] == "35.3.1"
    assert jetson_release(tmp_path / "absent") is None
    mem = tmp_path / "meminfo"
    mem.write_text("MemTotal:        7995048 kB\nMemFree:  100 kB\nMemAvailable:    5995048 kB\n")
    assert meminfo_used_bytes(str(mem)) == 2_000_000 * 1024
    line = "RAM 2345/7764MB (lfb 1x4MB) SWAP 0/3882MB CPU [12%@1420,off] GR3D_FREQ 0%"
    assert parse_tegrastats_ram(line) == 2345 * 2**20 and parse_tegrastats_ram("CPU [1%]") is None
