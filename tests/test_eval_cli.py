"""`edgekd eval` end to end on a tiny LFW-format folder: JSON keys, bad input, and the torch-free ONNX path."""

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekd.cli import cli

# lfw (2 folds x 3 identities) and pool_onnx are the shared fixtures of conftest.py


def test_eval_onnx_writes_json_and_plot(lfw, pool_onnx, tmp_path):
    out, png = tmp_path / "r.json", tmp_path / "roc.png"
    res = CliRunner().invoke(cli, ["eval", "--onnx", str(pool_onnx), "--data", str(lfw), "--json", str(out),
                                   "--plot", str(png), "--quiet", "--reference", str(pool_onnx)])
    assert res.exit_code == 0, res.output
    r = json.loads(out.read_text())
    assert r["kind"] == "eval" and r["label"] == {"model": "pool", "method": "vanilla", "precision": "fp32",
                                                  "artifact": str(pool_onnx)}
    assert r["num_pairs"] == 12 and r["num_images"] == 13 and r["num_folds"] == 2
    assert 0.5 <= r["accuracy_mean"] <= 1 and r["runtime"] == "onnxruntime" and len(r["artifact_sha256"]) == 64
    assert r["tar_at_far"]["1e-01"] is None and "1/6" in r["tar_at_far_note"]  # 6 impostor pairs only
    assert r["reference"]["cosine_min"] == pytest.approx(1.0, abs=1e-6)
    assert png.stat().st_size > 1000
    assert "accuracy" in res.output and "TAR@FAR=1e-01" in res.output


def test_bad_inputs_are_one_line_errors(lfw, pool_onnx, tmp_path):
    out = tmp_path / "r.json"
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("this is not\na pairs file at all\n")
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"not a checkpoint")
    cases = [
        (["--onnx", str(tmp_path / "missing.onnx"), "--data", str(lfw)], "missing.onnx: no such file"),
        (["--onnx", str(pool_onnx), "--data", str(garbage)], "garbage.txt"),
        (["--onnx", str(pool_onnx), "--weights", str(ckpt), "--data", str(lfw)], "exactly one"),
        (["--engine", str(tmp_path / "m.engine"), "--data", str(lfw)], "m.engine: no such file"),
    ]
    for args, msg in cases:
        res = CliRunner().invoke(cli, ["eval", *args, "--json", str(out), "--quiet"])
        assert res.exit_code == 1, (args, res.output)
        assert msg in res.output and len(res.output.strip().splitlines()) == 1, res.output
        assert not out.exists()


def test_wrong_architecture_checkpoint(lfw, tmp_path):
    from edgekd.models import create_model, save_checkpoint

    save_checkpoint(tmp_path / "m.pt", create_model("mobilefacenet", embedding_size=32), "mobilefacenet",
                    {"embedding_size": 32})
    res = CliRunner().invoke(cli, ["eval", "--weights", str(tmp_path / "m.pt"), "--model", "r18", "--data", str(lfw),
                                   "--json", str(tmp_path / "r.json"), "--quiet"])
    assert res.exit_code == 1 and "m.pt" in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "r.json").exists()


def test_onnx_path_never_imports_torch(lfw, pool_onnx, tmp_path):
    out = tmp_path / "r.json"
    code = f"""
import sys
sys.modules["torch"] = None  # any 'import torch' now fails
import edgekd.runtime.tensorrt.runner, edgekd.runtime.onnx_runtime, edgekd.eval, edgekd.eval.run
assert "click" not in sys.modules, "runtime/eval imported click"
from edgekd.cli import cli
cli.main(["eval", "--onnx", {str(pool_onnx)!r}, "--data", {str(lfw)!r}, "--json", {str(out)!r}, "--quiet"],
         standalone_mode=False)
loaded = [m for m, v in sys.modules.items() if (m == "torch" or m.startswith("torch.")) and v is not None]
assert not loaded, loaded
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(out.read_text())["runtime"] == "onnxruntime"
