"""Trainer building blocks that need no model: schedule, convergence verdict, data sharding, config files."""

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.train.config import TrainConfig, load_config_file
from edgekd.train.convergence import assess
from edgekd.train.schedule import lr_at
from edgekd.train.trainer import epoch_batches
from edgekd.train.distributed import all_reduce_grads


def test_schedules():
    assert lr_at(0, 100, 0.1, warmup=10) == pytest.approx(0.01)
    assert lr_at(9, 100, 0.1, warmup=10) == pytest.approx(0.1)
    assert lr_at(10, 100, 0.1, warmup=10, kind="poly") == pytest.approx(0.1)
    assert lr_at(100, 100, 0.1, kind="poly") == 0.0
    assert lr_at(55, 100, 0.1, warmup=10, kind="cosine") == pytest.approx(0.05)
    assert lr_at(70, 100, 0.1, kind="constant") == 0.1
    with pytest.raises(EdgekdError, match="unknown lr schedule"):
        lr_at(0, 10, 0.1, kind="step")


def test_convergence_verdicts():
    falling = [30.0, 26.0, 22.0, 18.0, 14.0, 11.0, 9.0, 7.5, 6.5, 6.0]
    v = assess(falling, [0.62, 0.68], num_classes=100, aucs=[0.70, 0.74])  # a briefly trained student
    assert (v.verdict, v.converged) == ("learning, not converged", False) and "still falls" in v.note
    assert "log(100) = 4.61" in v.note and "AUC 0.740" in v.note
    level = [30.0, 20.0, 10.0, 5.0, 3.0, 2.0, 1.2, 1.19, 1.18, 1.18]
    v = assess(level, [0.9, 0.95], num_classes=100, aucs=[0.97, 0.99])
    assert v.converged and v.note.startswith("converged: the loss levelled off")
    v = assess(level, [0.9, 0.95], num_classes=2, aucs=[0.97, 0.99])  # levelled off above log(2): not converged
    assert v.verdict == "learning, not converged" and "uniform guess" in v.note
    v = assess([20.0, 20.5, 19.9, 20.2, 20.1], [])
    assert v.verdict == "not learning" and "loss did not fall" in v.note
    v = assess(falling, [0.5], num_classes=100, aucs=[0.51])
    assert v.verdict == "not learning" and "verification is at chance" in v.note
    assert assess(level, [], num_classes=1_000_000).converged  # no verification: 1.18 beats log(1e6) = 13.8
    v = assess([40.0, 38.0, 37.0, 36.5, 36.4], [], num_classes=10)
    assert v.verdict == "not learning" and "no better than a uniform guess" in v.note
    v = assess(level, [0.7, 0.95, 0.80], num_classes=100, aucs=[0.9, 0.98, 0.9])
    assert v.verdict == "learning, not converged" and "fell from its best 0.9500" in v.note
    v = assess(level[:3] + [float("nan")], [])
    assert v.verdict == "not learning"
    assert assess([20.0], []).verdict == "too short to tell" and not assess([20.0], []).converged


def test_epoch_batches_shard_the_global_batch_deterministically():
    single = epoch_batches(50, 8, 1, 0, seed=3, epoch=2)
    r0, r1 = (epoch_batches(50, 4, 2, r, seed=3, epoch=2) for r in (0, 1))
    assert len(single) == len(r0) == 6  # 50 // 8, the partial batch dropped
    assert all(a + b == s for a, b, s in zip(r0, r1, single))
    assert epoch_batches(50, 4, 2, 1, seed=3, epoch=2, start=4) == r1[4:]
    assert epoch_batches(50, 8, 1, 0, seed=3, epoch=3) != single


def test_all_reduce_is_identity_in_one_process():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    assert all_reduce_grads([p], torch.tensor(1.5)).item() == 1.5 and p.grad.tolist() == [2.0] * 3


def test_rng_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    import random

    import numpy as np

    from edgekd.train.checkpoint import rng_state, set_rng_state

    torch.save(rng_state(), tmp_path / "rng.pt")
    first = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and (first[1] == again[1]).all() and first[2] == again[2]


def test_config_files(tmp_path):
    (tmp_path / "a.yaml").write_text("model: mbf\nbatch-size: 32\nval: [x.bin]\n")
    (tmp_path / "b.toml").write_text('model = "r50"\nlr = 0.01\n')
    assert load_config_file(tmp_path / "a.yaml") == {"model": "mbf", "batch_size": 32, "val": ["x.bin"]}
    assert TrainConfig.from_dict(load_config_file(tmp_path / "b.toml")).lr == 0.01
    with pytest.raises(EdgekdError, match="unknown option"):
        TrainConfig.from_dict({"modle": "r18"}, source="c.yaml")
    (tmp_path / "bad.yaml").write_text("model: [unclosed\n")
    with pytest.raises(EdgekdError, match="not a valid config file"):
        load_config_file(tmp_path / "bad.yaml")


def test_margin_presets_with_overrides():
    assert TrainConfig(margin="arcface").margins() == (1.0, 0.5, 0.0)
    assert TrainConfig(margin="cosface", m3=0.4).margins() == (1.0, 0.0, 0.4)
    assert TrainConfig(margin="combined", m1=1.0, m2=0.3, m3=0.2).margins() == (1.0, 0.3, 0.2)


def test_choices_are_listed_once_and_match_their_implementations():
    from edgekd.losses import MARGINS
    from edgekd.train import config
    from edgekd.train.trainer import AMP_DTYPES

    assert set(AMP_DTYPES) == set(config.AMP_MODES) - {"off"}
    assert set(MARGINS) == set(config.MARGIN_HEADS) - {"combined"}
    with pytest.raises(EdgekdError, match=r"unknown --schedule 'step' \(known: poly, cosine, constant\)"):
        TrainConfig(schedule="step").check_choices()


def test_override_order_defaults_resumed_run_file_command_line(tmp_path):
    from edgekd.train.config import merge_config

    out = tmp_path / "run"
    out.mkdir()
    saved = {**TrainConfig().to_dict(), "lr": 0.5, "seed": 3, "warmup": 7, "device": "cuda:3"}
    torch.save({"edgekd": {}, "train": {}, "config": saved}, out / "checkpoint.pt")
    (tmp_path / "c.yaml").write_text("seed: 4\nwarmup: 8\n")
    cfg = merge_config({"resume": True, "out": str(out), "warmup": 9}, tmp_path / "c.yaml")
    assert (cfg.lr, cfg.seed, cfg.warmup) == (0.5, 4, 9)  # resumed < file < command line
    assert cfg.device == "auto" and cfg.momentum == TrainConfig().momentum  # per-process keys are not resumed
