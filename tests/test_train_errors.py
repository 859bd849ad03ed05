"""Bad input fails with one line before any training step (and writes no run)."""

import torch
from click.testing import CliRunner

from edgekd.cli import cli


def _train(tmp_path, *args):
    out = tmp_path / "run"
    r = CliRunner().invoke(cli, ["train", "--out", str(out), "--no-progress", *args])
    return r, out


def _fails(tmp_path, match, *args):
    r, out = _train(tmp_path, *args)
    assert r.exit_code != 0, r.output
    assert match in r.output, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 or r.exit_code == 2, r.output  # click usage errors (2) print usage + one Error line
    assert not (out / "checkpoint.pt").exists() and not (out / "log.jsonl").exists()


def test_num_classes_disagree(tmp_path):
    _fails(tmp_path, "the dataset has 3 identities but --num-classes is 5",
           "--model", "mbf", "--data", "synthetic:3x2", "--num-classes", "5")


def test_empty_identity_and_empty_dataset(tmp_path):
    root = tmp_path / "faces"
    (root / "alice").mkdir(parents=True)
    _fails(tmp_path, "identity folder has no images", "--model", "mbf", "--data", str(root))
    empty = tmp_path / "empty"
    empty.mkdir()
    _fails(tmp_path, "empty", "--model", "mbf", "--data", str(empty))


def test_unknown_names(tmp_path):
    _fails(tmp_path, "unknown model 'r7'", "--model", "r7", "--data", "synthetic:3x2")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("margin: sphereface\n")
    _fails(tmp_path, "unknown --margin 'sphereface' (known: arcface, cosface, combined)", "--config", str(cfg), "--model", "mbf", "--data", "synthetic:3x2")
    cfg.write_text("optimizer: lamb\n")
    _fails(tmp_path, "unknown --optimizer 'lamb' (known: sgd, adamw)", "--config", str(cfg), "--model", "mbf", "--data", "synthetic:3x2")
    _fails(tmp_path, "Invalid value for '--margin'", "--margin", "sphereface", "--data", "synthetic:3x2")


def test_incompatible_options(tmp_path):
    base = ("--model", "mbf", "--data", "synthetic:3x2")
    if not torch.cuda.is_available():
        _fails(tmp_path, "--amp fp16 needs a CUDA device", *base, "--amp", "fp16", "--device", "cpu")
    _fails(tmp_path, "outside (0, 1]", *base, "--sample-rate", "0")
    _fails(tmp_path, "outside (0, 1]", *base, "--sample-rate", "1.5")
    _fails(tmp_path, "give --steps or --epochs, not both", *base, "--steps", "3", "--epochs", "1")
    _fails(tmp_path, "fewer than one global batch", *base, "--batch-size", "16")
    _fails(tmp_path, "no checkpoint to resume from", *base, "--resume")


def test_config_file_values_are_defaults_and_options_win(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "nosuch"\ndata = "synthetic:3x2"\n')
    _fails(tmp_path, "unknown model 'nosuch'", "--config", str(cfg))
    cfg.write_text('model = "nosuch"\ndata = "synthetic:3x2"\nnum_classes = 7\n')
    _fails(tmp_path, "--num-classes is 7", "--config", str(cfg), "--model", "mbf")


def test_init_weights_of_another_architecture(tmp_path):
    from edgekd.models import create_model, save_checkpoint

    w = save_checkpoint(tmp_path / "r18.pt", create_model("mobilenetv2"), "mobilenetv2", {})
    _fails(tmp_path, "--init weights are a mobilenetv2, not a mbf", "--model", "mbf", "--data", "synthetic:3x2",
           "--init", str(w))


def test_resume_with_another_model_and_existing_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    torch.save({"edgekd": {"model": "r18"}, "state_dict": {}, "train": {"step": 1},
                "config": {"model": "r18", "model_kwargs": {}}}, out / "checkpoint.pt")
    _fails_existing = CliRunner().invoke(cli, ["train", "--out", str(out), "--model", "mbf", "--data", "synthetic:3x2"])
    assert "already holds a run; pass --resume" in _fails_existing.output
    r = CliRunner().invoke(cli, ["train", "--out", str(out), "--resume", "--model", "mbf", "--data", "synthetic:3x2"])
    assert r.exit_code == 1 and "the run trains r18" in r.output and "resume with the same model" in r.output
