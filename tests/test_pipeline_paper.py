"""configs/paper.yaml's code paths at toy scale: its settings (an r101 teacher trained here, r18 and MobileFaceNet
students, vanilla / soft / adversarial KD, bf16 AMP, FP32/FP16/INT8 with FP16 and INT8 references, flip-test
evaluation, four bench batch sizes' worth of stages) with `--set` overrides for steps, data and sizes only.

Devices are overridden to cpu: paper.yaml's `device: cuda` / `runtime_device: cuda` need a GPU and, for the ONNX
evaluations, onnxruntime-gpu (`pip install edgekd[gpu]`); neither exists on the CI machine. Everything else is the
paper's configuration, so a full-scale run does not meet a code path for the first time after weeks of training.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOY = [
    "device=cpu", "runtime_device=cpu", "threads=1",  # see the module docstring
    "data.source=synthetic", "data.synthetic_identities=6", "data.synthetic_images_per_identity=3",
    "data.synthetic_val_pairs=20",
    "teacher.train_steps=1", "train.steps=1", "train.batch_size=4", "train.warmup=0", "train.num_workers=0",
    "train.bn_recal=1", "export.calib_images=8", "eval.batch_size=16",
    "bench.batch_sizes=[1]", "bench.warmup=0", "bench.iterations=1", "bench.min_time_s=0", "bench.max_time_s=1",
]


def test_paper_settings_keep_their_full_scale_choices_under_the_toy_overrides():
    from edgekd.pipeline.settings import load_pipeline_config

    cfg = load_pipeline_config(ROOT / "configs" / "paper.yaml", TOY)
    assert cfg.teacher.model == "r101" and cfg.teacher.weights is None  # trained, not downloaded
    assert [s["model"] for s in cfg.students] == ["r18", "mobilefacenet"] and cfg.methods == ["vanilla", "soft", "adv"]
    assert cfg.train.amp == "bf16" and cfg.eval.flip is True and cfg.eval.reference == ["fp16", "int8"]
    assert cfg.data.val_pairs_per_fold is None and cfg.export.precisions == ["fp32", "fp16", "int8"]


@pytest.mark.timeout(3600)
def test_paper_config_runs_at_toy_scale(tmp_path):
    from edgekd.pipeline.run import run_pipeline
    from edgekd.pipeline.settings import load_pipeline_config

    out = tmp_path / "paper"
    summary = run_pipeline(load_pipeline_config(ROOT / "configs" / "paper.yaml", TOY), out, progress=False)
    assert all(s["status"] == "done" for s in summary["stages"]), summary["stages"]
    names = {s["name"] for s in summary["stages"]}
    for student in ("r18", "mobilefacenet"):
        for method in ("vanilla", "soft", "adv"):
            assert f"train/{student}/{method}" in names and f"eval/{student}_{method}/int8" in names
    teacher = json.loads((out / "results" / "eval" / "teacher.json").read_text())
    assert teacher["label"]["model"] == "r101" and teacher["teacher_trained"] is True and teacher["flip"] == "sum"
    int8 = json.loads((out / "results" / "eval" / "r18_soft.int8.json").read_text())
    assert int8["reference"]["cosine_min"] is not None and int8["runtime"] == "onnxruntime"
    summary_json = json.loads((out / "results" / "train" / "r18_vanilla" / "summary.json").read_text())
    assert summary_json["config"]["amp"] == "bf16"
    report = json.loads((out / "report" / "report.json").read_text())
    assert {(e["model"], e["precision"]) for e in report["accuracy"]} >= {("r18", "int8"), ("mobilefacenet", "fp16")}
