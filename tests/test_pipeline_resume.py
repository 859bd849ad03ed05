"""End to end on a tiny synthetic config: every stage runs, a second run skips all of them, and changing a bench
setting re-runs only the bench stages and the report. Slow on a shared 2-core CPU (trains, exports, evaluates)."""

from __future__ import annotations

import json

import pytest

TINY = [
    "name=tiny", "methods=[vanilla, soft]", "data.source=synthetic", "data.synthetic_identities=20",
    "data.synthetic_images_per_identity=4", "data.synthetic_val_pairs=40", "teacher.weights=null",
    "teacher.train_steps=1", "train.steps=1", "train.batch_size=4", "train.warmup=0", "export.precisions=[fp32, int8]",
    "export.calib_images=8", "eval.batch_size=32", "bench.batch_sizes=[1]", "bench.warmup=0", "bench.iterations=2",
    "bench.min_time_s=0",
]


@pytest.mark.timeout(3600)  # ~3 min alone; far longer on the shared CPU under load
def test_pipeline_runs_then_resumes(tmp_path):
    from edgekd.pipeline.run import run_pipeline
    from edgekd.pipeline.settings import load_pipeline_config

    out = tmp_path / "run"
    first = run_pipeline(load_pipeline_config(None, TINY), out, progress=False)
    assert all(s["status"] == "done" for s in first["stages"])
    assert "SYNTHETIC" in first["data_source"]
    report = json.loads((out / "report" / "report.json").read_text())
    methods = {(e["method"], e["precision"]) for e in report["accuracy"]}
    assert {("vanilla", "fp32"), ("vanilla", "int8"), ("soft", "fp32"), ("soft", "int8"), ("teacher", "fp32")} <= methods
    assert (out / "report" / "fig1_accuracy_vs_gflops.png").stat().st_size > 1000
    assert "SYNTHETIC" in (out / "report" / "report.md").read_text()

    second = run_pipeline(load_pipeline_config(None, TINY), out, progress=False)
    assert all(s["status"] == "skipped" for s in second["stages"]), second["stages"]

    third = run_pipeline(load_pipeline_config(None, TINY + ["bench.iterations=3"]), out, progress=False)
    ran = {s["name"] for s in third["stages"] if s["status"] == "done"}
    assert ran == {s["name"] for s in third["stages"] if s["name"].startswith("bench/")} | {"report"}
