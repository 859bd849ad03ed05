"""run_distillation / `edgekd distill` end to end on tiny models: summary, checkpoint meta, resume, bad input."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from tiny_models import register_tiny  # noqa: E402

from edgekd.cli import cli  # noqa: E402
from edgekd.distill import run_distillation  # noqa: E402
from edgekd.errors import EdgekdError  # noqa: E402
from edgekd.models import create_model, save_checkpoint  # noqa: E402
from edgekd.train import TrainConfig  # noqa: E402

register_tiny("distill")  # distill_tiny: tiny_models "distill", a stride-8 stem on 112x112 faces

TINY = dict(model="distill_tiny", data="synthetic:4x4", batch_size=8, lr=0.05, log_every=1, progress=False,
            device="cpu", ckpt_every=1)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A 12-d teacher checkpoint of another width than the 16-d student (projection needed)."""
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_checkpoint(path, create_model("distill_tiny", embedding_size=12, channels=6), "distill_tiny",
                    {"embedding_size": 12, "channels": 6})
    return path


def test_distill_run_summary_and_resume(tmp_path, teacher):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    spec = "soft:1.0,adv:0.1,cosine:1,sp:1,rkd:1"
    s = run_distillation(TrainConfig(**TINY, out=str(out), steps=2), str(teacher), methods=spec,
                         options=["adv.disc=conv"], cache_dir=str(tmp_path / "cache"))
    assert s["kind"] == "distill" and s["method"] == "soft+adv+cosine+sp+rkd+arcface"
    assert s["teacher"].endswith("teacher.pt") and s["steps"] == 2
    assert isinstance(s["converged"], bool) and s["convergence_note"]
    assert json.loads((out / "summary.json").read_text())["kind"] == "distill"
    assert list((tmp_path / "cache").glob("teacher_head_*.npy"))  # the fitted head is cached for the next run
    from edgekd.models import load_model

    _, info = load_model(out / "model.pt")
    assert info.meta["method"] == s["method"] and info.meta["kind"] == "distill"
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert "adv.discriminator" in ckpt["extra_state"] and ckpt["objective"]["teacher_centres"].shape == (4, 12)
    assert not any(k.startswith("teacher.") for k in ckpt["objective"])  # the frozen teacher is never checkpointed
    d_state = ckpt["extra_state"]["adv.discriminator"]["state"]
    assert d_state and all(int(v["step"]) == 2 for v in d_state.values())  # D stepped once per student step

    s2 = run_distillation(TrainConfig(**{**TINY, "steps": 3}, out=str(out), resume=True), str(teacher), methods=spec,
                          options=["adv.disc=conv"], cache_dir=str(tmp_path / "cache"))
    assert s2["steps"] == 3
    steps = [json.loads(x)["step"] for x in (out / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(int(v["step"]) == 3 for v in ckpt["extra_state"]["adv.discriminator"]["state"].values())


def _fails(tmp_path, teacher, msg, **kw):
    args = dict(methods="soft")
    args.update(kw)
    with pytest.raises(EdgekdError, match=msg) as e:
        run_distillation(TrainConfig(**TINY, out=str(tmp_path / "out"), steps=1), str(teacher), **args)
    assert "\n" not in str(e.value)
    assert not (tmp_path / "out" / "summary.json").exists() and not (tmp_path / "out" / "checkpoint.pt").exists()


def test_teacher_of_another_architecture_or_size(tmp_path, teacher):
    _fails(tmp_path, teacher, "weights do not fit", teacher_model="mbf")
    raw = tmp_path / "raw.pt"  # a plain state_dict of a 12-d model, declared as the default (16-d) distill_tiny
    torch.save(create_model("distill_tiny", embedding_size=12).state_dict(), raw)
    _fails(tmp_path, raw, "fc.weight has shape", teacher_model="distill_tiny")


def test_teacher_head_of_wrong_class_count_or_size(tmp_path, teacher):
    head = tmp_path / "head.npy"
    np.save(head, np.ones((3, 12), np.float32))
    _fails(tmp_path, teacher, "3 classes but synthetic:4x4 has 4 identities", teacher_head=str(head))
    np.save(head, np.ones((4, 7), np.float32))
    _fails(tmp_path, teacher, r"shape \(4, 7\), expected \(classes, 12\)", teacher_head=str(head))


def test_unknown_method_bad_weights_and_options(tmp_path, teacher):
    _fails(tmp_path, teacher, "unknown distillation method 'hint'", methods="soft,hint")
    _fails(tmp_path, teacher, "not a number", methods="soft:x")
    _fails(tmp_path, teacher, "no option 'T'", options=["soft.T=2"])


def test_conv_discriminator_with_mismatched_feature_maps(tmp_path):
    path = tmp_path / "t14.pt"  # stride 1: a 14x14 last feature map against the student's 7x7
    save_checkpoint(path, create_model("distill_tiny", stride=1), "distill_tiny", {"stride": 1})
    _fails(tmp_path, path, "student 7x7 vs teacher 14x14", methods="adv", options=["adv.disc=conv"])


def test_cli_distill_prints_convergence_and_errors_in_one_line(tmp_path, teacher):
    runner = CliRunner()
    base = ["distill", "--teacher", str(teacher), "--student", "distill_tiny", "--data", "synthetic:4x4",
            "--batch-size", "8", "--device", "cpu", "--no-progress"]
    r = runner.invoke(cli, base + ["--method", "bogus:1", "--out", str(tmp_path / "bad")])
    assert r.exit_code == 1 and r.output.startswith("Error: unknown distillation method 'bogus'")
    assert len(r.output.strip().splitlines()) == 1
    init = tmp_path / "vanilla.pt"  # students may start from a vanilla checkpoint
    save_checkpoint(init, create_model("distill_tiny"), "distill_tiny", {})
    r = runner.invoke(cli, base + ["--method", "cosine:1,sp:1", "--steps", "2", "--init", str(init),
                                   "--out", str(tmp_path / "ok")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "ok" / "summary.json").read_text())
    assert s["method"] == "cosine+sp+arcface" and s["model"] == "distill_tiny"
    assert s["config"]["init_weights"] == str(init)
    assert s["convergence_note"] in r.output
