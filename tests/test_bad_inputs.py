"""Issue 10's bad-input cases as a table, run as a user would (the CLI): exit status 1, exactly one `Error:` line
naming the file, no traceback, and no output left behind (only what the case itself set up remains).

A full disk is a real 256 KiB tmpfs where this runs as root (CI containers), else torch.save's own failure
("unexpected pos", a RuntimeError) and a full disk's zero free bytes are modelled; a read-only folder is a read-only
tmpfs as root, else a chmod 555 folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from click.testing import CliRunner

from edgekd.cli import cli

TRAIN = ["--model", "mbf", "--data", "synthetic:4x4", "--batch-size", "8", "--steps", "2", "--device", "cpu",
         "--no-progress"]


def invoke(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_line(r, code: int = 1) -> str:
    """The one `Error:` line of a failed command (tqdm's carriage returns split lines too)."""
    assert r.exit_code == code, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert "Traceback" not in r.output, r.output
    lines = [ln for ln in re.split(r"[\r\n]", r.output) if "Error:" in ln]
    assert len(lines) == 1, r.output
    return lines[0][lines[0].index("Error:"):]


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def mount_tmpfs(where: Path, options: str) -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


@pytest.fixture
def full_disk(tmp_path):
    """A 256 KiB filesystem (None where it cannot be mounted)."""
    mnt = tmp_path / "full"
    if not mount_tmpfs(mnt, "size=256k"):
        yield None
        return
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


@pytest.fixture
def read_only(tmp_path):
    mnt = tmp_path / "ro"
    if mount_tmpfs(mnt, "ro,size=64k"):
        yield mnt
        subprocess.run(["umount", "-l", str(mnt)], check=True)
        return
    mnt.mkdir(exist_ok=True)
    mnt.chmod(0o555)
    if os.access(mnt, os.W_OK):
        pytest.skip("cannot make an unwritable folder here")
    yield mnt
    mnt.chmod(0o755)


# ---- the table: one row per case ------------------------------------------------------------------------------------

@dataclass
class Case:
    """`setup(tmp)` makes the inputs and returns the command line; each `expect` text ("a|b": either) must appear in
    the Error line; after the run the tree under tmp must be exactly what setup made."""

    setup: Callable[[Path], list]
    expect: tuple[str, ...]


def _file(tmp: Path, name: str = "X", text: str = "a file\n") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def _shard(tmp: Path) -> Path:
    from edgekd.data.image import encode_jpeg
    from edgekd.data.recordio import write_shard

    rng = np.random.default_rng(0)
    imgs = [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(4)]
    write_shard(tmp / "rec", np.array([0, 0, 1, 1]), imgs, (112, 112))
    return tmp / "rec"


def _cut_rec(tmp: Path) -> list:
    rec = _shard(tmp) / "train.rec"
    last = max(int(line.split()[1]) for line in (tmp / "rec" / "train.idx").read_text().splitlines())
    rec.write_bytes(rec.read_bytes()[: last + 12])  # the file ends inside its last record
    return ["data", "info", rec]


def _bin(tmp: Path) -> Path:
    from edgekd.data import write_bin
    from edgekd.data.image import encode_jpeg

    rng = np.random.default_rng(1)
    write_bin(tmp / "v.bin", [encode_jpeg(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)) for _ in range(4)],
              [True, False])
    return tmp / "v.bin"


def _calib(tmp: Path, change: Callable[[np.ndarray], np.ndarray]) -> list:
    from edgekd.export.calib import make_calib

    make_calib("synthetic:2x2", tmp / "calib", n=4, progress=False)
    shard = tmp / "calib" / "shard_0000.npy"
    np.save(shard, change(np.load(shard)), allow_pickle=True)
    manifest = json.loads((tmp / "calib" / "manifest.json").read_text())
    manifest["shards"][0]["sha256"] = hashlib.sha256(shard.read_bytes()).hexdigest()  # hashes updated to match
    (tmp / "calib" / "manifest.json").write_text(json.dumps(manifest))
    return ["export", "--model", "mbf", "--no-fp16", "--calib", tmp / "calib", "--out", tmp / "out" / "m.onnx"]


def _nan(x):
    x = x.copy()
    x[1, 0, 3, 3] = np.nan
    return x


def _report_abc(tmp: Path) -> list:
    res = tmp / "results" / "train" / "a"
    res.mkdir(parents=True)
    (res / "summary.json").write_text(json.dumps({
        "kind": "train", "label": {"model": "mbf", "method": "vanilla", "precision": "fp32", "artifact": "m.pt"},
        "accuracy_mean": "abc", "accuracy_std": 0.01}))
    return ["report", tmp / "results"]


def _zero_landmarks(tmp: Path) -> list:
    from edgekd.data.image import encode_jpeg

    (tmp / "raw" / "A").mkdir(parents=True)
    (tmp / "raw" / "A" / "A_0001.jpg").write_bytes(encode_jpeg(np.full((150, 150, 3), 128, np.uint8)))
    (tmp / "lm.txt").write_text("A/A_0001.jpg" + "\t0" * 10 + "\n")
    return ["data", "align", tmp / "raw", tmp / "aligned", "--landmarks", tmp / "lm.txt", "--workers", "1"]


def _pickle_bomb(tmp: Path) -> list:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'PWNED'}",))

    (tmp / "evil.pt").write_bytes(pickle.dumps({"state_dict": Payload()}))
    return ["eval", "--weights", tmp / "evil.pt", "--data", _bin(tmp)]


def _sidecar(tmp: Path, text: str) -> list:
    (tmp / "m.engine").write_bytes(b"not checked before the sidecar")
    (tmp / "m.engine.json").write_text(text)
    return ["eval", "--engine", tmp / "m.engine", "--data", _bin(tmp)]


CASES = {
    # issue item 1 (engine sidecar that is a number or null): one line, whether TensorRT is absent or present
    "1 sidecar null": Case(lambda t: _sidecar(t, "null"), ("m.engine.json|tensorrt Python package is not installed",)),
    "1 sidecar number": Case(lambda t: _sidecar(t, "5"), ("m.engine.json|tensorrt Python package is not installed",)),
    "3 report accuracy_mean abc": Case(_report_abc, ("summary.json: accuracy_mean is \"abc\"",)),
    "4 calib shard wrong shape": Case(lambda t: _calib(t, lambda x: x[:, :, :56]), ("shard_0000.npy", "expected float32")),
    "4 calib shard dtype object": Case(lambda t: _calib(t, lambda x: np.array([None] * len(x), object)),
                                       ("shard_0000.npy", "not a plain .npy array")),
    "4 calib shard NaN": Case(lambda t: _calib(t, _nan), ("shard_0000.npy", "NaN")),
    "5 pipeline --set train.steps=abc": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "train.steps=abc"],
                                             ("train.steps",)),
    "5 pipeline --set train.steps=1.5": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "train.steps=1.5"],
                                             ("train.steps",)),
    "5 pipeline --set methods=bogus": Case(lambda t: ["pipeline", "--out", t / "p", "--set", "methods=bogus"],
                                           ("bogus",)),
    "6 train --out FILE": Case(lambda t: ["train", *TRAIN, "--out", _file(t)], ("X: is a file",)),
    "6 train --out under a FILE": Case(lambda t: ["train", *TRAIN, "--out", _file(t) / "run"], ("X is a file",)),
    "7 data pack onto a FILE --overwrite": Case(lambda t: ["data", "pack", "synthetic:2x2", _file(t), "--overwrite"],
                                                ("X: is a file",)),
    "8 data align, all-zero landmarks": Case(_zero_landmarks, ("lm.txt: A/A_0001.jpg", "landmarks")),
    "9 data info, .rec cut in its last record": Case(_cut_rec, ("train.rec: truncated",)),
    "resume from an empty folder": Case(lambda t: ["train", "--out", t / "empty", "--resume"],
                                        ("checkpoint.pt: no checkpoint to resume from",)),
    "plain-pickle payload": Case(_pickle_bomb, ("evil.pt: refused",)),
    "folder given for a file (argument)": Case(lambda t: ["data", "pack-pairs", t, t, t / "o.bin"],
                                               ("is a folder, expected a file",)),
    "folder given for a file (option)": Case(lambda t: ["eval", "--weights", t, "--data", _bin(t)],
                                             ("is a folder, expected a file",)),
    "file given for a folder": Case(lambda t: ["report", _file(t)], ("X: is a file, expected a folder",)),
    "missing file": Case(lambda t: ["data", "pack-pairs", t / "nope.txt", t, t / "o.bin"], ("nope.txt: does not exist",)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_table(name, tmp_path, monkeypatch, one_torch_thread):
    case = CASES[name]
    work = tmp_path / "w"
    work.mkdir()
    (work / "empty").mkdir()
    monkeypatch.chdir(work)
    args = case.setup(work)
    before = tree(work)
    line = error_line(invoke(*args))
    for text in case.expect:
        assert any(alt in line for alt in text.split("|")), line
    assert tree(work) == before, f"left behind: {sorted(set(tree(work)) - set(before))}"
    assert not (work / "PWNED").exists()
    if "sidecar" not in name and "pipeline" not in name:
        assert "False" not in line and "weights_only" not in line


# ---- cases that need a full or read-only filesystem, a training run, or the shared data ----------------------------

def test_training_into_a_full_disk(full_disk, tmp_path, monkeypatch, one_torch_thread):
    """Issue item 2: torch.save fails with RuntimeError on a full disk; one line naming the checkpoint, no run."""
    if full_disk is None:  # model torch's failure: a partial write, then RuntimeError, with no space left
        import torch

        real_save = torch.save

        def failing_save(obj, f, *a, **k):
            Path(f).write_bytes(b"PK\x03\x04partial")
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 128 vs 0")

        monkeypatch.setattr(torch, "save", failing_save)
        monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
        where = tmp_path
        assert real_save is not failing_save
    else:
        where = full_disk
    line = error_line(invoke("train", *TRAIN, "--out", where / "run"))
    assert "run/checkpoint.pt: write failed (No space left on device); nothing was written" in line
    assert not (where / "run").exists()


def test_pack_into_a_full_disk_names_the_output(full_disk):
    if full_disk is None:
        pytest.skip("needs root to mount a small tmpfs")
    line = error_line(invoke("data", "pack", "synthetic:30x4", full_disk / "packed"))
    assert "packed: write failed (No space left on device)" in line
    assert tree(full_disk) == []


def test_unwritable_out_is_found_before_step_one(read_only, tmp_path, monkeypatch, one_torch_thread):
    """Checked before the data and model load (a first-checkpoint failure would come after every step)."""
    import edgekd.data

    def no_data(*a, **k):
        raise AssertionError("the data was opened before --out was checked")

    monkeypatch.setattr(edgekd.data, "open_dataset", no_data)
    line = error_line(invoke("train", *TRAIN, "--out", read_only / "run"))
    assert "run: cannot write here" in line
    line = error_line(invoke("distill", "--teacher", tmp_path / "absent.pt", *TRAIN, "--out", read_only / "run"))
    assert "absent.pt" in line or "cannot write here" in line
    line = error_line(invoke("export", "--model", "mbf", "--out", read_only / "m.onnx"))
    assert "cannot write here" in line


def test_nan_before_the_first_checkpoint(tmp_path, one_torch_thread):
    line = error_line(invoke("train", *TRAIN, "--lr", "1e30", "--out", tmp_path / "run"))
    assert "not finite" in line or "loss is nan" in line, line
    assert "None" not in line and "no checkpoint had been written" in line
    assert not (tmp_path / "run").exists()


def test_resume_cleans_temps_and_records_the_device(tmp_path, one_torch_thread):
    """A kill -9 during a checkpoint write leaves `.checkpoint.pt.<random>.tmp`; the resumed run removes it.
    Without --device the run records the device it used, not `auto`."""
    run = tmp_path / "run"
    common = [a for a in TRAIN if a not in ("--device", "cpu")]
    r = invoke("train", *common, "--out", run)
    assert r.exit_code == 0, r.output
    assert json.loads((run / "summary.json").read_text())["config"]["device"] in ("cpu", "cuda:0")
    stale = run / ".checkpoint.pt.k9x_abc.tmp"
    stale.write_bytes(b"PK\x03\x04half")
    (run / "summary.json").unlink()
    r = invoke("train", *[a if a != "2" else "4" for a in common], "--out", run, "--resume")
    assert r.exit_code == 0, r.output
    assert not stale.exists()
    assert json.loads((run / "summary.json").read_text())["config"]["device"] != "auto"


def test_cuda_device_with_cpu_only_onnxruntime(shared_data, tmp_path):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    onnx = shared_data / "weights" / "mobilefacenet_ms1m_foamliu" / "MobileFaceNet.onnx"
    line = error_line(invoke("eval", "--onnx", onnx, "--data", shared_data / "bins" / "small_lfw.bin",
                             "--device", "cuda", "--json", tmp_path / "e.json"))
    assert "MobileFaceNet.onnx: device 'cuda' needs ONNX Runtime's CUDAExecutionProvider" in line
    assert "edgekd[gpu]" in line and not (tmp_path / "e.json").exists()


def test_paper_config_on_cpu_only_onnxruntime(tmp_path):
    """configs/paper.yaml evaluates its ONNX files on CUDA: with CPU-only onnxruntime that is one line before the
    first stage, not a failure at the first evaluation after the training."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    root = Path(__file__).resolve().parents[1]
    line = error_line(invoke("pipeline", "--config", root / "configs" / "paper.yaml", "--out", tmp_path / "p"))
    assert "runtime_device cuda" in line and "edgekd[gpu]" in line
    assert not (tmp_path / "p").exists()


def test_real_rec_cut_inside_its_last_record(shared_data, tmp_path):
    src = shared_data / "recordio" / "adaface_tiny"
    rec = tmp_path / "train.rec"
    rec.write_bytes((src / "train.rec").read_bytes()[:-100])
    shutil.copy(src / "train.idx", tmp_path / "train.idx")
    assert "train.rec: truncated" in error_line(invoke("data", "info", rec))
    assert "train.rec: truncated" in error_line(invoke("data", "pack", rec, tmp_path / "packed"))
    assert not (tmp_path / "packed").exists()


def test_build_without_tensorrt_leaves_no_engines_folder(shared_data, tmp_path, monkeypatch):
    from edgekd.runtime.tensorrt import tensorrt_installed

    if tensorrt_installed():
        pytest.skip("tensorrt is installed")
    monkeypatch.chdir(tmp_path)
    onnx = shared_data / "weights" / "mobilefacenet_ms1m_foamliu" / "MobileFaceNet.onnx"
    assert "tensorrt" in error_line(invoke("build", "--onnx", onnx, "--precision", "fp16", "--profile", "1,1,1"))
    assert tree(tmp_path) == []


def test_usage_errors_keep_exit_status_2():
    """A malformed command line (not a bad input file) is click's usage error: exit 2, usage + one Error line."""
    r = invoke("train", "--steps", "abc")
    assert r.exit_code == 2 and "Traceback" not in r.output and r.output.count("Error:") == 1
