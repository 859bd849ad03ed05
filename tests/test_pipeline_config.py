"""Pipeline settings: defaults = configs/demo.yaml, paper.yaml parses, overrides, one-line errors; stage plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgekd.errors import EdgekdError
from edgekd.pipeline.settings import load_pipeline_config

ROOT = Path(__file__).resolve().parent.parent


def test_demo_yaml_equals_defaults():
    assert load_pipeline_config(ROOT / "configs" / "demo.yaml") == load_pipeline_config()


def test_paper_yaml_is_full_scale():
    cfg = load_pipeline_config(ROOT / "configs" / "paper.yaml")
    assert cfg.teacher.model == "r101" and cfg.teacher.weights is None
    assert cfg.device == "cuda" and cfg.train.steps > 100_000 and cfg.data.val_pairs_per_fold is None
    assert {s["model"] for s in cfg.students} == {"r18", "mobilefacenet"}
    assert cfg.methods == ["vanilla", "soft", "adv"]


def test_overrides_and_errors(tmp_path):
    cfg = load_pipeline_config(None, ["train.steps=7", "bench.batch_sizes=[1, 4]", "methods=[vanilla]"])
    assert cfg.train.steps == 7 and cfg.bench.batch_sizes == [1, 4] and cfg.methods == ["vanilla"]
    with pytest.raises(EdgekdError, match="unknown option.*train.stepz"):
        load_pipeline_config(None, ["train.stepz=3"])
    with pytest.raises(EdgekdError, match="KEY=VALUE"):
        load_pipeline_config(None, ["train.steps"])
    bad = tmp_path / "bad.toml"
    bad.write_text('[export]\nprecisions = ["int4"]\n')
    with pytest.raises(EdgekdError, match="bad.toml.*precisions"):
        load_pipeline_config(bad)


@pytest.mark.parametrize("override, message", [
    ("train.steps=abc", "train.steps must be int"),
    ("train.steps=1.5", "train.steps must be int"),  # never silently rounded
    ("methods=bogus", "unknown distillation method 'bogus'"),  # a word, not a list of its characters
    ("methods=[vanilla, soft:x]", "weight 'x'"),
    ("method_options={soft: [soft.temprature=4]}", "no option 'temprature'"),
    ("students=[{model: r999}]", "unknown model 'r999'"),
    ("eval.flip=maybe", "eval.flip must be bool"),
    ("runtime_device=gpu", "runtime_device must be"),
    ("train.lr=fast", "train.lr must be float"),
])
def test_set_values_checked_against_types_and_method_names(override, message):
    with pytest.raises(EdgekdError, match=message):
        load_pipeline_config(None, [override])


def test_scalar_for_a_list_setting_is_one_item():
    assert load_pipeline_config(None, ["methods=soft"]).methods == ["soft"]


@pytest.mark.parametrize("args, message", [
    (["--set", "methods=bogus"], "bogus"),
    (["--set", "train.steps=abc"], "train.steps"),
])
def test_pipeline_cli_rejects_bad_set_before_any_stage(tmp_path, args, message):
    from click.testing import CliRunner

    from edgekd.cli import cli

    r = CliRunner().invoke(cli, ["pipeline", "--out", str(tmp_path / "o"), "--quiet", *args])
    assert r.exit_code == 1 and message in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "o").exists()  # nothing ran, nothing written


def test_pipeline_output_must_be_writable(tmp_path):
    from edgekd.pipeline.run import run_pipeline

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(EdgekdError, match="file"):
        run_pipeline(load_pipeline_config(None, ["data.source=synthetic"]), blocker / "run", progress=False)


def test_stage_plan_synthetic(tmp_path):
    from edgekd.pipeline.plan import build_stages

    cfg = load_pipeline_config(None, ["data.source=synthetic", "teacher.weights=null"])
    names = [s.name for s in build_stages(cfg, tmp_path)]
    assert names[:3] == ["data", "teacher", "eval/teacher"]
    for m in ("vanilla", "soft", "adv"):
        assert f"train/mobilefacenet/{m}" in names and f"export/mobilefacenet/{m}" in names
        for p in ("fp32", "fp16", "int8"):
            assert f"eval/mobilefacenet_{m}/{p}" in names and f"bench/mobilefacenet_{m}/{p}" in names
    assert "tensorrt" in names and names[-1] == "report"


def test_stage_plan_with_tensorrt(tmp_path, monkeypatch):
    import edgekd.pipeline.plan as pl

    monkeypatch.setattr(pl, "tensorrt_installed", lambda: True)
    cfg = load_pipeline_config(None, ["data.source=synthetic", "teacher.weights=null", "methods=[vanilla]"])
    names = [s.name for s in pl.build_stages(cfg, tmp_path)]
    assert "tensorrt" not in names and "tensorrt/mobilefacenet_vanilla" in names
    for p in ("fp32", "fp16", "int8"):
        assert f"eval/mobilefacenet_vanilla/{p}-tensorrt" in names and f"bench/mobilefacenet_vanilla/{p}-tensorrt" in names
    report = pl.build_stages(cfg, tmp_path)[-1]
    assert "eval/mobilefacenet_vanilla/int8-tensorrt" in report.after


def test_pipeline_cli_bad_config_one_line(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("trian: {steps: 3}\n")
    code = ("from edgekd.cli import main\nimport sys\n"
            f"sys.argv = ['edgekd', 'pipeline', '--out', {str(tmp_path / 'o')!r}, '--config', {str(cfg)!r}]\nmain()\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Error:" in r.stderr and "trian" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_limit_pairs_balanced_per_fold():
    import numpy as np

    from edgekd.data import synthetic_verification_set
    from edgekd.data.plan import limit_pairs

    full = synthetic_verification_set(pairs_per_fold=6)
    small = limit_pairs(full, 2)
    assert len(small.issame) == 10 * 4
    for f in range(10):
        sel = small.folds == f
        assert sel.sum() == 4 and small.issame[sel].sum() == 2
    # the kept pairs are the same images as in the full set
    k = int(np.nonzero(full.folds == 3)[0][0])
    j = int(np.nonzero(small.folds == 3)[0][0])
    assert np.array_equal(small.image(small.pairs[j, 0]), full.image(full.pairs[k, 0]))
    assert limit_pairs(full, None) is full and limit_pairs(full, 100) is full


def test_fold_subset_is_labelled_as_pairs_txt_numbers_folds():
    from edgekd.data import synthetic_verification_set

    held_out = synthetic_verification_set(pairs_per_fold=2).subset([5, 6, 7, 8, 9])  # 0-based ids of folds 6-10
    assert held_out.name.endswith("[folds 6,7,8,9,10]")
