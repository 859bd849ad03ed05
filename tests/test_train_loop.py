"""The training loop end to end on a tiny CPU run: outputs, NaN stop, exact resume after kill -9, 2-process gloo."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from edgekd.errors import EdgekdError
from edgekd.train import MarginObjective, TrainConfig, run_training

TINY = dict(model="mbf", data="synthetic:4x4", batch_size=4, lr=0.05, log_every=1, progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def val_bin(tmp_path_factory):
    """20 synthetic pairs as an insightface .bin (the real format, small enough for a CPU test)."""
    from edgekd.data import synthetic_verification_set, write_bin
    from edgekd.data.image import encode_jpeg

    v = synthetic_verification_set(num_identities=20, pairs_per_fold=2, images_per_identity=2)
    blobs = [encode_jpeg(v.image(int(k))) for pair in v.pairs for k in pair]
    return write_bin(tmp_path_factory.mktemp("val") / "tiny.bin", blobs, v.issame)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, val_bin):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    summary = run_training(TrainConfig(**TINY, out=str(out), steps=3, val=[str(val_bin)], ckpt_every=2))
    return out, summary


def test_run_writes_summary_log_and_loadable_checkpoints(tiny_run, val_bin):
    from edgekd.models import load_model

    out, s = tiny_run
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    for key in ("model", "method", "teacher", "data", "val_data", "steps", "wall_time_s", "img_per_s", "device",
                "converged", "convergence_note", "checkpoint", "verification", "accuracy_mean", "accuracy_std",
                "tar_at_far", "label"):
        assert key in s
    assert s["kind"] == "train" and s["method"] == "vanilla" and s["steps"] == 3 and s["img_per_s"] > 0
    assert 0.0 <= s["accuracy_mean"] <= 1.0 and s["verification"]["data"] == str(val_bin)
    assert isinstance(s["converged"], bool) and s["convergence_note"]
    lines = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3]
    assert lines[-1]["step"] == 3 and "val" in lines[-1]
    model, info = load_model(out / "model.pt")  # no --model needed
    assert info.name == "mobilefacenet" and info.meta["method"] == "vanilla" and info.meta["step"] == 3
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["train"]["step"] == 3 and ckpt["objective"]["head.weight"].shape == (4, 512)


def test_bn_recal_averages_batch_statistics_under_the_final_weights(tmp_path):
    """model.pt's first BatchNorm holds the plain mean of its input's batch means over the re-estimation batches,
    while checkpoint.pt (what --resume reads) keeps the running averages of training."""
    from edgekd.models import load_model
    from edgekd.train.trainer import Trainer

    out = tmp_path / "recal"
    run_training(TrainConfig(**TINY, out=str(out), steps=2, bn_recal=3))
    model, _ = load_model(out / "model.pt")
    conv, bn = model.layers[0].layers[0], model.layers[0].layers[1]
    with torch.no_grad():
        batches = Trainer(TrainConfig(**TINY, out=str(tmp_path / "probe"), steps=2)).loader(epoch=-1, start=0)
        means = [conv(x).mean(dim=(0, 2, 3)) for x, _ in list(batches)[:3]]
    torch.testing.assert_close(bn.running_mean, torch.stack(means).mean(0), rtol=1e-4, atol=1e-5)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)["state_dict"]
    assert not torch.allclose(ckpt["layers.0.layers.1.running_mean"], bn.running_mean)
    assert torch.equal(ckpt["layers.0.layers.0.weight"], conv.weight)
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert {"step": 2, "bn_recal_batches": 3} in log


def test_init_starts_from_the_given_weights(tiny_run, tmp_path):
    from edgekd.train import Trainer

    t = Trainer(TrainConfig(**TINY, out=str(tmp_path / "init"), steps=1, init_weights=str(tiny_run[0] / "model.pt")))
    saved = torch.load(tiny_run[0] / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(v, saved[k]) for k, v in t.model.state_dict().items())


def test_resume_with_a_head_of_another_size_fails(tiny_run, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    (out / "summary.json").unlink()
    with pytest.raises(EdgekdError, match=r"head.weight has shape \(4, 512\), this run needs \(3, 512\)"):
        run_training(TrainConfig(**{**TINY, "data": "synthetic:3x4"}, out=str(out), steps=4, resume=True))


class _NanAt(MarginObjective):
    """Returns a NaN loss from the 3rd step on (as a diverging run would)."""

    calls = 0

    def forward(self, model, images, labels):
        loss, logs = super().forward(model, images, labels)
        _NanAt.calls += 1
        return (loss * float("nan"), logs) if _NanAt.calls >= 3 else (loss, logs)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(EdgekdError) as e:
        run_training(TrainConfig(**TINY, out=str(out), steps=4, ckpt_every=2),
                     objective=lambda model, n: _NanAt(n, model.embedding_size))
    msg = str(e.value)
    assert "step 3: loss is nan" in msg and "last good checkpoint" in msg and "(step 2) kept" in msg
    assert "\n" not in msg
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["train"]["step"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())
    assert not (out / "summary.json").exists()


def _edgekd(*args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", "from edgekd.cli import main; main()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _curve(out: Path) -> list:
    """The log without timing fields: what must match between a resumed and an uninterrupted run."""
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "img_per_s"} for r in rows]


def test_resume_after_kill_reproduces_the_uninterrupted_run(tmp_path):
    # log means span the checkpoint (log every 3, checkpoint every 2) and Partial FC draws random negatives
    args = ["--model", "mbf", "--data", "synthetic:8x2", "--batch-size", "4", "--steps", "7", "--lr", "0.05",
            "--log-every", "3", "--ckpt-every", "2", "--sample-rate", "0.75", "--device", "cpu", "--no-progress",
            "--seed", "3"]
    ref = _edgekd("train", "--out", str(tmp_path / "ref"), *args)
    out = tmp_path / "killed"
    p = _edgekd("train", "--out", str(out), *args)
    while not (out / "checkpoint.pt").exists():  # checkpoint at step 2 of the 4-step epoch: mid-epoch
        assert p.poll() is None, p.stdout.read()
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (out / "summary.json").exists()
    killed_at = torch.load(out / "checkpoint.pt", weights_only=True)["train"]["step"]
    assert killed_at < 7
    r = _edgekd("train", "--out", str(out), "--resume", "--no-progress")  # options come from the checkpoint
    assert r.wait() == 0, r.stdout.read()
    assert ref.wait() == 0, ref.stdout.read()
    assert _curve(out) == _curve(tmp_path / "ref")
    a = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "ref" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
    s = json.loads((out / "summary.json").read_text())
    assert s["steps"] == 7


def test_two_processes_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = Path(sys.executable).with_name("edgekd")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        str(script), "train", "--out", str(out), "--model", "mbf", "--data", "synthetic:4x4",
                        "--batch-size", "2", "--steps", "3", "--log-every", "1", "--device", "cpu", "--no-progress",
                        "--sample-rate", "0.5"],
                       env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["world_size"] == 2 and s["global_batch"] == 4 and s["steps"] == 3
    assert len([x for x in _curve(out) if "loss" in x]) == 3
    assert r.stdout.count("model.pt: 3 steps") == 1  # rank 0 alone reports


@pytest.mark.shared_data
def test_real_recordio_shard_and_bin(shared_data, tmp_path):
    """The real formats: an MXNet RecordIO shard (8 faces, 2 identities); small_lfw.bin (all pairs positive) is
    refused as a verification set before training."""
    rec = {**TINY, "data": str(shared_data / "recordio" / "adaface_tiny" / "train.rec")}
    with pytest.raises(EdgekdError, match="small_lfw.bin: verification needs both"):
        run_training(TrainConfig(**rec, out=str(tmp_path / "bad"), steps=2, val=[str(shared_data / "bins" / "small_lfw.bin")]))
    assert not (tmp_path / "bad" / "log.jsonl").exists()
    s = run_training(TrainConfig(**rec, out=str(tmp_path / "rec"), steps=2))
    assert s["num_classes"] == 2 and s["steps"] == 2 and s["num_images"] == 8
