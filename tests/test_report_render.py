"""`edgekd report` from fixture result JSONs: tables, missing cells as —, CSV/markdown/JSON/PNG written."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from edgekd.errors import EdgekdError
from edgekd.io import write_json_atomic


def verification(acc, std=0.01, far=(0.9, 0.5, None)):
    return {"accuracy_mean": acc, "accuracy_std": std, "fold_accuracies": [acc] * 10, "best_threshold": 0.3,
            "tar_at_far": dict(zip(("1e-01", "1e-02", "1e-03"), far)), "eer": 0.1, "auc": 0.95,
            "num_pairs": 3000, "num_images": 3800, "flip": "sum", "data": "/x/lfw/pairs.txt", "data_sha256": "ab"}


def summary(kind, model, method, acc):
    v = verification(acc)
    return {"kind": kind, "label": {"model": model, "method": method, "precision": "fp32", "artifact": "ckpt.pt"},
            "model": model, "method": method, "teacher": None, "steps": 10, "verification": v,
            "accuracy_mean": v["accuracy_mean"], "accuracy_std": v["accuracy_std"], "tar_at_far": v["tar_at_far"]}


def bench(model, method, precision, gflops):
    lat = {"mean": 5.0, "std": 0.5, "p50": 4.9, "p90": 5.6, "p99": 6.0, "min": 4.5}
    return {"kind": "bench", "label": {"model": model, "method": method, "precision": precision, "artifact": "m.onnx"},
            "runtime": "onnxruntime", "precision": precision, "device": "cpu",
            "results": [{"batch": 1, "iterations": 20, "latency_ms": lat, "device_ms": None, "throughput_img_s": 200.0},
                        {"batch": 8, "iterations": 20, "latency_ms": lat, "device_ms": None, "throughput_img_s": 1600.0}],
            "memory": {"gpu_bytes": None, "torch_peak_bytes": None, "rss_peak_bytes": 300 * 2**20, "unified_bytes": None},
            "artifact_bytes": 4 * 2**20, "params": 1_000_000, "gflops": gflops, "env": {"cpu_model": "test"}}


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    write_json_atomic(root / "train/mbf_vanilla/summary.json", summary("train", "mbf", "vanilla", 0.80))
    write_json_atomic(root / "distill/mbf_soft/summary.json", summary("distill", "mbf", "soft", 0.83))
    write_json_atomic(root / "train/r18_vanilla/summary.json", summary("train", "r18", "vanilla", 0.86))
    ev = {"kind": "eval", "label": {"model": "mbf", "method": "soft", "precision": "int8", "artifact": "m.int8.onnx"},
          **verification(0.825, far=(0.88, None, None)), "runtime": "onnxruntime", "precision": "int8",
          "reference": {"cosine_min": 0.97, "cosine_mean": 0.99}}
    write_json_atomic(root / "eval/mbf_soft_int8.json", ev)
    write_json_atomic(root / "bench/mbf_soft_fp32.json", bench("mbf", "soft", "fp32", 0.23))
    write_json_atomic(root / "bench/mbf_soft_int8.json", bench("mbf", "soft", "int8", 0.23))
    write_json_atomic(root / "export/m.onnx.json", {"precision": "int8"})  # not a result: ignored
    return root


def test_report_tables_and_files(results, tmp_path):
    from edgekd.report import build_report

    out = tmp_path / "rep"
    s = build_report(results, out)
    files = {k: out / v.split("/")[-1] for k, v in s["files"].items()}
    for f in files.values():
        assert f.exists() and f.stat().st_size > 0, f
    assert files["fig1_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    t1 = list(csv.reader(files["table1_csv"].open()))
    head = t1[0]
    assert head[:4] == ["dataset", "model", "precision", "runtime"]
    assert head[4:7] == ["vanilla", "soft KD", "adversarial KD"]
    rows = {tuple(r[1:4]): dict(zip(head, r)) for r in t1[1:]}
    mbf = rows[("mbf", "fp32", "torch")]
    assert mbf["dataset"] == "lfw (3000 pairs)"
    assert mbf["vanilla"] == "80.00 ± 1.00" and mbf["soft KD"] == "83.00 ± 1.00"
    assert mbf["adversarial KD"] == "—"  # never run: shown missing, not invented
    assert rows[("mbf", "int8", "onnxruntime")]["soft KD"] == "82.50 ± 1.00"
    assert rows[("mbf", "int8", "onnxruntime")]["vanilla"] == "—"
    assert rows[("r18", "fp32", "torch")]["soft KD"] == "—"
    det = list(csv.DictReader(files["table1_details_csv"].open()))
    int8 = next(d for d in det if d["precision"] == "int8")
    assert int8["TAR@FAR=1e-01"] == "88.00" and int8["TAR@FAR=1e-02"] == "—"
    assert int8["cos vs FP32 (min/mean)"] == "0.9700 / 0.9900"
    t2 = list(csv.DictReader(files["table2_csv"].open()))
    assert len(t2) == 4 and {r["batch"] for r in t2} == {"1", "8"}
    assert t2[0]["latency ms (mean ± std)"] == "5.00 ± 0.50" and t2[0]["GPU MiB"] == "—"
    assert t2[0]["artifact MiB"] == "4.0" and t2[0]["GFLOPs"] == "0.230"
    # r18 has no GFLOPs anywhere: not plotted, and said so
    assert s["counts"]["fig1_points"] == 3
    assert any("r18" in n and "no GFLOPs" in n for n in s["notes"])
    md = files["report_md"].read_text()
    assert "Table 1" in md and "Table 2" in md and "| — |" in md
    data = json.loads(files["report_json"].read_text())
    assert data["kind"] == "report" and data["table1"]["rows"]


def test_report_rerun_ignores_its_own_output(results):
    from edgekd.report import build_report

    a = build_report(results)
    b = build_report(results)  # report.json under results/report is not a result
    assert a["counts"] == b["counts"]


def test_eval_supersedes_summary(tmp_path):
    from edgekd.report import build_report

    write_json_atomic(tmp_path / "a/summary.json", summary("train", "mbf", "vanilla", 0.80))
    ev = {"kind": "eval", "label": {"model": "mbf", "method": "vanilla", "precision": "fp32", "artifact": "x.pt"},
          **verification(0.81), "runtime": "torch"}
    write_json_atomic(tmp_path / "b/eval.json", ev)
    s = build_report(tmp_path)
    assert s["table1"]["rows"] == [["lfw (3000 pairs)", "mbf", "fp32", "torch", "81.00 ± 1.00", "—", "—"]]


def test_report_errors(tmp_path):
    from edgekd.report import build_report

    with pytest.raises(EdgekdError, match="no such results folder"):
        build_report(tmp_path / "missing")
    with pytest.raises(EdgekdError, match="no result JSON"):
        build_report(tmp_path)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(EdgekdError, match="bad.json"):
        build_report(tmp_path)
    assert not (tmp_path / "report").exists()  # no partial outputs


def test_report_cli(results, tmp_path):
    code = ("from edgekd.cli import main\nimport sys\n"
            f"sys.argv = ['edgekd', 'report', {str(results)!r}, '--out', {str(tmp_path / 'o')!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "3 points in Fig 1" in r.stdout and (tmp_path / "o/report.md").exists()
